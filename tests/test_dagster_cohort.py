"""`patients` and `scans` materialised in-process by Dagster against a real DuckDB store."""

from __future__ import annotations

import datetime

import dagster as dg
import duckdb
import pandas as pd
import pytest

from metorigin.core.config import RunConfig
from metorigin.core.store import Store
from metorigin.definitions import build_definitions
from metorigin.defs.cohort import assets as cohort_assets
from metorigin.defs.cohort import promotions
from metorigin.defs.common.names import REQUEST_TAG
from metorigin.defs.common.partitions import scan_partitions
from metorigin.defs.common.resources import (
    CohortResource,
    LakeIOManager,
    SettingsResource,
    StoreResource,
)
from metorigin.defs.imaging.sensors import new_scans_sensor, nightly_catch_up
from metorigin.imaging.fingerprints import cohort_fingerprint
from metorigin.runtime import batches as scan_batches
from tests.helpers import another_scan_like, append_row, replace_in

# Every test here runs the pipeline or a subprocess: `make test`, not `make test-fast`.
pytestmark = pytest.mark.slow

ASSETS = [cohort_assets.patients, cohort_assets.scans, promotions.model_promotions]  # what ingest materialises


def _resources(cohort_dir, store_dir) -> dict:
    return {
        "cohort": CohortResource(path=str(cohort_dir)),
        "store": StoreResource(path=str(store_dir)),
        "settings": SettingsResource(profile="quick"),
        "io_manager": LakeIOManager(path=str(store_dir)),
    }


def _materialize(cohort_dir, store_dir, instance, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(ASSETS, resources=_resources(cohort_dir, store_dir), instance=instance, **kwargs)


@pytest.fixture
def instance():
    """In-memory: a fixture that yields from inside `instance_for_test` leaks Dagster's context state
    (its definitions-state storage) into later tests once pytest tears it down in another context."""
    return dg.DagsterInstance.ephemeral()


def _query(store_dir, sql):
    """SQL over the lake tables that these cohort-only runs write (dbt builds the DuckDB file later)."""
    with duckdb.connect() as con:
        for table in ("patients", "scans"):
            con.execute(f"create view {table} as select * from read_parquet('{Store(store_dir).lake_file(table)}')")
        return con.execute(sql).fetchall()


def test_materialize_writes_lake_and_partitions(cohort, tmp_path, instance):
    store_dir = tmp_path / "store"
    result = _materialize(cohort, store_dir, instance)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    n_patients = len(pd.read_csv(cohort / "patients.csv"))
    assert _query(store_dir, "select count(*) from patients") == [(n_patients,)]
    assert _query(store_dir, "select count(*), count(*) filter (where included) from scans") == [(10, 8)]
    lake = Store(store_dir)
    assert lake.lake_file("scans").is_file() and len(lake.read_lake("scans")) == 10
    included = sorted(r[0] for r in _query(store_dir, "select scan_id from scans where included"))
    assert sorted(instance.get_dynamic_partitions(scan_partitions.name)) == included
    meta = result.asset_materializations_for_node("scans")[0].metadata
    assert meta["n_included"].value == 8 and meta["new_partitions"].value == 8


def test_bad_row_fails_the_check_but_keeps_the_good_scans(cohort, tmp_path, instance):
    store_dir = tmp_path / "store"
    assert _materialize(cohort, store_dir, instance).success
    line = append_row(cohort / "scans.csv", "S0100,P001,images/missing.nii.gz,,,,B30s,1.5,portal_venous")
    result = _materialize(cohort, store_dir, instance, raise_on_error=False)
    assert result.success  # the asset itself materialised ...
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [(e.asset_key.to_user_string(), e.check_name) for e in failed] == [("scans", "rows_valid")]
    messages = failed[0].metadata["messages"].value
    assert f"scans.csv line {line} (S0100)" in messages and "Fix:" in messages
    # ... and the good scans are all still there and included
    assert _query(store_dir, "select count(*) filter (where included), count(*) from scans") == [(8, 11)]
    assert _query(store_dir, "select valid, exclusion_reason from scans where scan_id = 'S0100'")[0][0] is False


def test_unusable_csv_fails_the_run_and_loses_nothing_stored(cohort, tmp_path, instance):
    store_dir = tmp_path / "store"
    assert _materialize(cohort, store_dir, instance).success
    before = _query(store_dir, "select * from scans order by scan_id")
    replace_in(cohort / "scans.csv", "scan_id,", "id,")
    result = _materialize(cohort, store_dir, instance, raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert "scans.csv" in failure.step_failure_data.error.message
    assert "Fix: add the column(s) scan_id" in failure.step_failure_data.error.message
    assert _query(store_dir, "select * from scans order by scan_id") == before


def test_sensor_and_schedule_ask_for_exactly_the_missing_work(cohort, tmp_path, monkeypatch):
    defs = build_definitions(RunConfig(cohort=str(cohort), store=str(tmp_path / "store")))
    repository = defs.get_repository_def()
    with dg.instance_for_test() as instance:  # sensors need a persistent instance
        _ask_for_missing_work(cohort, tmp_path, instance, defs, repository, monkeypatch)


def _batched(requests) -> list[list[str]]:
    """The scans of each `process_scans` run requested."""
    return [r.run_config["ops"]["process_scan_batch"]["config"]["scans"] for r in requests]


def _batch_config(scans: list[str]) -> dict:
    return {"ops": {"process_scan_batch": {"config": {"scans": scans}}}}


def _ask_for_missing_work(cohort, tmp_path, instance, defs, repository, monkeypatch):

    # The built contexts enter the instance; closing them (`with`) restores Dagster's context state,
    # which a context left to the garbage collector would reset at a random later moment.
    looks = []  # the cursor each tick left

    def tick(cursor=None):
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
        ) as context:
            result = new_scans_sensor(context)
            looks.append(context.cursor)
            return result

    first = tick()
    assert [r.job_name for r in first.run_requests] == ["ingest_cohort"]  # nothing ingested yet
    (added,) = first.dynamic_partitions_requests
    assert len(added.partition_keys) == 8
    instance.add_dynamic_partitions(scan_partitions.name, list(added.partition_keys))
    assert _materialize(cohort, tmp_path / "store", instance).success  # the ingest run

    fingerprint = cohort_fingerprint(cohort)
    second = tick(cursor=fingerprint)
    assert _batched(second.run_requests) == [sorted(added.partition_keys)]  # one process_scans run for all
    assert {r.job_name for r in second.run_requests} == {"process_scans"}
    assert tick(cursor=fingerprint).run_requests[0].run_key == second.run_requests[0].run_key  # launched once

    done = sorted(added.partition_keys)[:5]
    store = Store(tmp_path / "store")
    for scan_id in done:  # pretend these were processed: their per-scan materialisations and lake files
        for asset in (
            "scan_integrity",
            "segmentations",
            "lesions",
            "radiomics_features",
            "lesion_slices",
            "scan_predictions",
        ):
            instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=scan_id))
            store.write_lake(asset, pd.DataFrame({"scan_id": [scan_id]}), scan_id)
    third = tick(cursor=fingerprint)
    assert _batched(third.run_requests) == [sorted(added.partition_keys)[5:]]
    # A scan whose run failed is not asked for again (until it changes); one a running batch holds waits.
    failed, queued, left = scan_batches.scans_awaiting_processing(instance, defs.resources["store"], repository)
    batch = repository.get_job("process_scans")
    instance.create_run_for_job(batch, tags={REQUEST_TAG: failed.key}, status=dg.DagsterRunStatus.FAILURE)
    instance.create_run_for_job(batch, run_config=_batch_config([queued.scan_id]), status=dg.DagsterRunStatus.STARTED)
    assert _batched(tick(cursor=fingerprint).run_requests) == [[left.scan_id]]
    # From its own cursor, the sensor asks again only about scans with new events since its last look.
    assert isinstance(tick(cursor=looks[-1]), dg.SkipReason)
    instance.report_runless_asset_event(
        dg.AssetObservation("scan_inputs", partition=left.scan_id, tags={"dagster/data_version": "edited"})
    )
    assert _batched(tick(cursor=looks[-1]).run_requests) == [[left.scan_id]]
    monkeypatch.setattr(scan_batches, "SCANS_PER_RUN", 1)  # a bigger batch is split, here one scan to a run
    night = datetime.datetime(2026, 11, 28, 2, 0, tzinfo=datetime.timezone.utc)
    with dg.build_schedule_context(
        instance=instance, repository_def=repository, resources=defs.resources, scheduled_execution_time=night
    ) as context:
        schedule = nightly_catch_up(context)
    assert [r.run_key for r in schedule] == ["nightly-2026-11-28-1", "nightly-2026-11-28-2"]
    # The night retries the failed scan, and leaves the one a running batch holds to that batch.
    assert _batched(schedule) == [[failed.scan_id], [left.scan_id]]

    another_scan_like(cohort / "images" / "S0002.nii.gz", cohort / "images" / "S0100.nii.gz")
    append_row(cohort / "scans.csv", "S0100,P001,images/S0100.nii.gz,masks/S0002.nii.gz,1,2,B30s,1.5,portal_venous")
    fourth = tick(cursor=fingerprint)
    assert [r.partition_keys for r in fourth.dynamic_partitions_requests] == [["S0100"]]
    assert "ingest_cohort" in [r.job_name for r in fourth.run_requests]
