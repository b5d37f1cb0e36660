"""Per-scan assets through Dagster: every included scan processed, one bad scan failing alone."""

from __future__ import annotations

import os
import shutil

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from PIL import Image

from metorigin.core.config import RunConfig
from metorigin.core.manifest import bind_study
from metorigin.core.store import Store
from metorigin.definitions import build_definitions
from metorigin.defs.common.names import BATCH_TAG, per_scan_keys
from metorigin.runtime.execution import reconstructable_job
from metorigin.runtime.runner import run_selection
from metorigin.runtime.staleness import settled_partitions, stale_closure
from tests.helpers import NOT_STUDY

PER_SCAN = ("segmentations", "lesions", "radiomics_features", "lesion_slices")
INGEST = {"study_settings", "patients", "scans", "model_promotions"}  # what ingest_cohort materialises


@pytest.fixture
def defs(cohort, tmp_path, monkeypatch):
    """The real Definitions, pointed at a private cohort copy and store."""
    return build_definitions(RunConfig(cohort=str(cohort), store=str(tmp_path / "store"), workers=2))


@pytest.mark.slow
def test_every_included_scan_gets_all_four_assets_and_a_bad_scan_fails_alone(defs, cohort, tmp_path):
    store = Store(tmp_path / "store")
    with dg.instance_for_test() as instance:
        report = run_selection(defs, instance, selection=NOT_STUDY, progress=lambda _: None)
        assert report.ok, report.step_failures
        included = sorted(store.read_lake("scans").query("included")["scan_id"])
        for asset in PER_SCAN:
            assert store.lake_partitions(asset) == included, asset
        lesions = store.read_lake("lesions")
        features = store.read_lake("radiomics_features")
        assert set(features["lesion_id"]) == set(lesions.loc[lesions["included"], "lesion_id"])
        assert features.groupby("lesion_id").size().eq(107).all()
        assert features["settings_hash"].nunique() == 1 and features["pyradiomics_version"].nunique() == 1
        slices = store.read_lake("lesion_slices")
        assert set(slices["lesion_id"]) <= set(lesions.loc[lesions["included"], "lesion_id"])
        with np.load(store.root / slices.iloc[0]["slices_file"]) as data:
            assert data["slices"].shape == (int((slices["scan_id"] == slices.iloc[0]["scan_id"]).sum()), 224, 224)
        # Each scan's QC picture: a file in the store, and on the lesions asset's page; the lesion's
        # contour (red) is drawn on the slice through the largest lesion.
        assert sorted(p.stem for p in (store.artifacts / "qc").glob("*.png")) == included
        with_lesions = lesions.loc[lesions["included"], "scan_id"].iloc[0]
        with Image.open(store.artifacts / "qc" / f"{with_lesions}.png") as picture:
            rgb = np.asarray(picture.convert("RGB")).astype(int)
        assert ((rgb[..., 0] > 180) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)).sum() > 5
        event = instance.get_latest_materialization_event(dg.AssetKey("lesions"))
        assert "](data:image/png;base64," in event.asset_materialization.metadata["qc_image"].value

        incremental_runs(defs, instance, cohort, included)

        # One scan's image turns corrupt after ingest: the re-run reports that scan in the row check,
        # leaves the others as they were (unchanged: skipped), and leaves the bad scan's earlier
        # results in the store untouched.
        victim = included[2]
        before = store.read_lake("lesions", [victim])
        mtimes = {a: os.path.getmtime(store.lake_file(a, victim)) for a in PER_SCAN}
        (cohort / "corrupt").mkdir()
        (cohort / "corrupt" / f"{victim}.nii.gz").write_bytes(b"not an image")
        scans_csv = cohort / "scans.csv"
        scans_csv.write_text(scans_csv.read_text().replace(f"images/{victim}.nii.gz", f"corrupt/{victim}.nii.gz"))
        report = run_selection(defs, instance, selection=f"key:scans+ and {NOT_STUDY}", progress=lambda _: None)
        assert not report.ok
        assert [c for c, _ in report.failed_checks] == ["scans:rows_valid"] and victim in report.failed_checks[0][1]
        assert "not a readable image" in report.failed_checks[0][1]
        assert report.step_failures == []  # no longer included: not processed again, not failed again
        assert "segmentations" not in report.materialized and report.skipped["imaging"] == len(included) - 1
        pd.testing.assert_frame_equal(store.read_lake("lesions", [victim]), before)
        assert {a: os.path.getmtime(store.lake_file(a, victim)) for a in PER_SCAN} == mtimes


def _materialized_partitions(instance: dg.DagsterInstance, asset: str) -> list[str]:
    """Every materialisation of a per-scan asset in the event log, as its partition (one per run)."""
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
    return sorted(r.partition_key for r in records)


def fresh_as_the_resolver_says(defs, instance, scans: list[str]) -> set[str]:
    """The scans whose per-scan assets are all fresh, read in batches (`settled_partitions`, what the
    sensor, the schedule and `metorigin run` ask first), asserted to be those Dagster's resolver calls
    fresh, and the others those it calls stale."""
    graph = defs.get_repository_def().asset_graph
    keys = per_scan_keys(graph)
    fresh, stale = settled_partitions(instance, graph, keys, scans)
    resolver_fresh = {scan for scan in scans if not stale_closure(instance, graph, keys, scan)}
    assert fresh == resolver_fresh and stale == set(scans) - resolver_fresh  # these events settle every scan
    return fresh


def incremental_runs(defs, instance, cohort, included: list[str]) -> None:
    """Runs recompute only what changed, as the event log records it: nothing on a second run; one
    scan (and the feature store) when one image's content changed, in a `process_scans` run that a
    damaged scan fails only after the others; only the re-check of a file whose time changed but
    not its bytes."""
    history = {a: _materialized_partitions(instance, a) for a in PER_SCAN}
    assert history["lesions"] == included

    again = run_selection(defs, instance, selection=NOT_STUDY, progress=lambda _: None)
    assert again.ok and again.skipped["imaging"] == len(included)
    assert fresh_as_the_resolver_says(defs, instance, included) == set(included)
    assert set(again.materialized) == INGEST  # ingest only: it finds changes
    assert {a: _materialized_partitions(instance, a) for a in PER_SCAN} == history

    images = cohort / "images"  # the fixture links the shared images: edit a private copy (times kept)
    shared = images.resolve()
    images.unlink()
    shutil.copytree(shared, images)
    edited, touched, broken = [scan for scan in included if (images / f"{scan}.nii.gz").is_file()][:3]
    path = images / f"{edited}.nii.gz"
    image = sitk.ReadImage(str(path))
    voxels = sitk.GetArrayFromImage(image)
    voxels[0, 0, 0] += 1  # one voxel in a corner: another image by content
    changed = sitk.GetImageFromArray(voxels)
    changed.CopyInformation(image)
    sitk.WriteImage(changed, str(path), useCompression=True)
    damaged = images / f"{broken}.nii.gz"  # cut short: its header reads, its voxels do not
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    # As the daemon does it: ingest, then a `process_scans` run (here without a list, as launched from
    # the UI: every stale scan), one `process_scan` run inside it for each changed scan.
    assert run_selection(defs, instance, selection="group:cohort", progress=lambda _: None).ok
    assert fresh_as_the_resolver_says(defs, instance, included) == set(included) - {edited, broken}
    batch = dg.execute_job(reconstructable_job("process_scans"), instance, raise_on_error=False)
    (failure,) = batch.get_step_failure_events()  # the damaged scan fails the batch, after the others
    assert "1 of 2 scans failed (their own process_scan runs say why)" in failure.step_failure_data.error.message
    scan_runs = instance.get_runs(dg.RunsFilter(job_name="process_scan", tags={BATCH_TAG: batch.run_id}))
    # A file's new time asks for its integrity check alone, and new content for the rest.
    assert sorted((r.tags["dagster/partition"], r.status.value) for r in scan_runs) == sorted(
        [(broken, "FAILURE"), (edited, "SUCCESS"), (edited, "SUCCESS")]
    )
    shutil.copy(shared / damaged.name, damaged)  # repaired: the same bytes as before, a new time
    for asset in PER_SCAN:
        assert _materialized_partitions(instance, asset) == sorted([*history[asset], edited]), asset
    third = run_selection(defs, instance, selection=NOT_STUDY, progress=lambda _: None)
    assert third.ok and third.skipped["imaging"] == len(included), third.step_failures
    assert "feature_store/lesion_features" in third.materialized  # rebuilt once, for the edited scan

    os.utime(images / f"{touched}.nii.gz")  # a new time, the same bytes
    fourth = run_selection(defs, instance, selection=NOT_STUDY, progress=lambda _: None)
    assert set(fourth.materialized) == INGEST | {"scan_integrity"}
    # `touched`'s integrity check is newer than what its segmentation read, with the same data version.
    assert fresh_as_the_resolver_says(defs, instance, included) == set(included)
    assert fourth.materialized["scan_integrity"] == 1 and fourth.skipped["feature_store"] > 0


def test_a_changed_radiomics_setting_re_extracts_the_features_alone(cohort, tmp_path):
    """A scan's imaging assets are one step, run on the subset that is stale: another crop margin
    re-extracts the features from the stored lesions (its settings hash on every row); the check, the
    segmentation, the lesions and the slices are not made again, and their files are not rewritten."""
    scans_csv = cohort / "scans.csv"
    scans_csv.write_text("\n".join(scans_csv.read_text().splitlines()[:3]) + "\n")  # two scans show it
    store = Store(tmp_path / "store")
    wider = tmp_path / "wider.yaml"
    wider.write_text("base: paper\nradiomics:\n  crop_margin_voxels: 3\n")
    selection = "group:cohort or group:imaging"
    with dg.instance_for_test() as instance:
        first = build_definitions(RunConfig(cohort=str(cohort), store=str(store.root), workers=1))
        assert run_selection(first, instance, selection=selection, progress=lambda _: None).ok
        scans = store.lake_partitions("lesions")
        kept = ("scan_integrity", "segmentations", "lesions", "lesion_slices")
        history = {a: _materialized_partitions(instance, a) for a in kept}
        mtimes = {(a, s): os.path.getmtime(store.lake_file(a, s)) for a in kept for s in scans}
        old_hash = store.read_lake("radiomics_features")["settings_hash"].unique()

        config = RunConfig(cohort=str(cohort), store=str(store.root), workers=1, study_file=str(wider))
        bind_study(store, config.study(), replace=True)  # as `metorigin run --replace-study` does
        second = build_definitions(config)
        report = run_selection(second, instance, selection=selection, progress=lambda _: None)
        assert report.ok, report.step_failures
        assert report.materialized["radiomics_features"] == len(scans) and not set(kept) & set(report.materialized)
        assert {a: _materialized_partitions(instance, a) for a in kept} == history
        assert {(a, s): os.path.getmtime(store.lake_file(a, s)) for a in kept for s in scans} == mtimes
        new_hash = store.read_lake("radiomics_features")["settings_hash"].unique()
        assert len(new_hash) == 1 and new_hash[0] != old_hash[0]

        # A mask changed behind ingest's back, and a later asset run alone (as the UI or the schedule
        # can): the step refuses files its stored check does not cover, naming the scan and the fix,
        # and writes nothing.
        masks = cohort / "masks"  # the fixture links the shared masks: edit a private copy
        shared = masks.resolve()
        masks.unlink()
        shutil.copytree(shared, masks)
        victim = scans[-1]
        mask = cohort / store.read_lake("scans", None).set_index("scan_id").loc[victim, "mask"]
        mask.write_bytes(mask.read_bytes() + b"\0")  # other bytes: another sha256
        before = os.path.getmtime(store.lake_file("radiomics_features", victim))
        alone = second.resolve_job_def("process_scan").execute_in_process(
            instance=instance,
            partition_key=victim,
            asset_selection=[dg.AssetKey("radiomics_features")],
            raise_on_error=False,
        )
        assert not alone.success
        (failure,) = alone.get_step_failure_events()
        message = failure.step_failure_data.error.message
        assert victim in message and "not checked as they are now" in message and "run scan_integrity" in message
        assert os.path.getmtime(store.lake_file("radiomics_features", victim)) == before
