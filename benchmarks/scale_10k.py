"""The platform at 10,000 scans: loading the definitions, the sensor's and the nightly schedule's
ticks, listing the scans that await processing, the dbt build of the feature store, and the UI's
asset page, on a store of 10,000 processed scans (plus 1% newly ingested ones).

No imaging runs. The store is generated as the pipeline leaves it:
- the lake: `patients`, `scans`, `study_settings` and the six per-scan tables, one Parquet file per
  scan and table as the per-scan assets write them (`lake/<asset>/<scan>.parquet`: 60,000 files at
  10,000 scans; `scan_predictions` empty, nothing promoted), with 8 lesions a scan and the study's
  107 radiomics features (`benchmarks/sql_scale.py` writes the tables);
- the cohort folder: the two CSVs and an (empty) image and mask file per scan, what the sensor stats;
- the store's Dagster instance: every scan registered as a partition, the ingest's `scans`
  materialisation (with the cohort's fingerprint) and each scan's `scan_inputs` observation, and for
  each processed scan a materialisation of each per-scan asset carrying the data-version tags a run
  records (code version, data version, each input's data version and event), so Dagster's
  staleness resolver calls it fresh. The new scans have none: they are what the ticks must find.
Then, timed: the definitions loaded in a new process; the cohort sensor's first tick (it asks about
every scan) and its next one; the nightly schedule's tick; `scans_awaiting_processing` (what
`metorigin run` and the batch runs ask); the feature store's dbt build (`dbt build` of the
`feature_store` and `gated_feature_store` steps' models and tests, in its own process: time and peak
memory); and the asset page's GraphQL query for `lesions` (partition statuses and the latest
materialisations) against `dagster-webserver` on 127.0.0.1. Each tick and the listing must name
exactly the new scans.

    .venv/bin/python benchmarks/scale_10k.py [--scans 10000] [--workdir DIR]
    .venv/bin/python benchmarks/scale_10k.py --smoke   # 20 scans, the same steps

Then the same listing once another radiomics setting has made every processed scan stale (what a
changed study asks of the sensor, the schedule and `metorigin run`): it must name every scan.

Last line: `ticks_s=<max tick> dbt_s=<dbt build> dbt_gb=<its peak memory> stale_s=<the stale listing>`;
each figure is printed with its target before it (ticks < 10 s, dbt < 300 s and 4 GB, the stale
listing < 30 s, on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import duckdb
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from metorigin.defs.common.names import COHORT_FINGERPRINT, per_scan_keys  # noqa: E402
from metorigin.runtime.dagster_internals import (
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    get_input_data_version_tag,
    get_input_event_pointer_tag,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a plain checkout too

from benchmarks.daemon_speed import free_port, graphql  # noqa: E402
from benchmarks.sql_scale import copy_table, lesion_id_sql, run_dbt, write_lake  # noqa: E402
from metorigin.core.config import RunConfig, child_environment  # noqa: E402
from metorigin.core.study import get_settings  # noqa: E402
from metorigin.definitions import build_definitions  # noqa: E402
from metorigin.defs.common.names import BATCH_OP  # noqa: E402
from metorigin.defs.common.partitions import scan_partitions  # noqa: E402
from metorigin.defs.common.resources import resources_for  # noqa: E402
from metorigin.defs.feature_store.dbt import (  # noqa: E402
    DBT_DIR,
    EXTERNAL_MODELS,
    REGISTRY_MODELS,
    RESULT_MODELS,
    ROBUSTNESS_MODELS,
    dbt_vars,
)
from metorigin.defs.imaging.assets import scan_inputs  # noqa: E402
from metorigin.defs.imaging.sensors import new_scans_sensor, nightly_catch_up  # noqa: E402
from metorigin.imaging.fingerprints import cohort_fingerprint  # noqa: E402
from metorigin.runtime.batches import scans_awaiting_processing  # noqa: E402
from metorigin.runtime.home import use_store_instance  # noqa: E402

TARGET_TICK_S, TARGET_DBT_S, TARGET_DBT_GB, TARGET_STALE_S = 10.0, 300.0, 4.0, 30.0
LESIONS_PER_SCAN, SLICES_PER_LESION = 8, 5
NEW_FRACTION = 0.01  # ingested and registered, not processed yet
SETTINGS_HASH = "'bench'"
# The `feature_store` and `gated_feature_store` steps: every model but the study's and validation's.
FEATURE_STORE_MODELS = ["--exclude", RESULT_MODELS, REGISTRY_MODELS, ROBUSTNESS_MODELS, EXTERNAL_MODELS]
PROMOTIONS = dg.AssetKey("model_promotions")


def write_cohort(cohort: Path, scans: list[str]) -> None:
    """patients.csv and scans.csv (one patient a scan), and an empty image and mask file for each scan:
    the sensor stats every file scans.csv names."""
    for folder in ("images", "masks"):
        (cohort / folder).mkdir(parents=True, exist_ok=True)
    with open(cohort / "patients.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["patient_id", "primary_site", "age", "sex"])
        out.writerows([f"P{s[1:]}", "colorectal" if k % 5 < 3 else "pancreatic", 60, "F"] for k, s in enumerate(scans))
    with open(cohort / "scans.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["scan_id", "patient_id", "image", "mask"])
        for scan in scans:
            out.writerow([scan, f"P{scan[1:]}", f"images/{scan}.nii.gz", f"masks/{scan}.nii.gz"])
            (cohort / "images" / f"{scan}.nii.gz").touch()
            (cohort / "masks" / f"{scan}.nii.gz").touch()


def write_more_tables(lake: Path, processed: list[str], n_slices: int) -> None:
    """The per-scan tables `sql_scale` does not write (the DenseNet's slice index, the predictions:
    none, nothing is promoted) and the settings table."""
    con = duckdb.connect()
    per_scan = LESIONS_PER_SCAN * SLICES_PER_LESION
    copy_table(
        con,
        lake,
        "lesion_slices",
        {
            "lesion_id": lesion_id_sql(f"(i // {SLICES_PER_LESION})", LESIONS_PER_SCAN),
            "scan_id": f"'S' || (i // {per_scan})",
            "patient_id": f"'P' || (i // {per_scan})",
            "slice_index": f"i % {SLICES_PER_LESION}",
            "array_row": f"i % {per_scan}",
            "lesion_area_px": "400",
            "lesion_area_mm2": "225.0",
            "crop_side_mm": "40.0",
            "slices_file": f"'artifacts/lesion_slices/S' || (i // {per_scan}) || '.npz'",
            "settings_hash": SETTINGS_HASH,
        },
        f"range({n_slices}) t(i)",
        scans=processed,
    )
    predictions = ["lesion_id", "scan_id", "patient_id", "model_id", "arm", "model", "probability"]
    predictions += ["predicted_label", "out_of_distribution", "distribution_notes", "seen_in_training"]
    predictions += ["input_settings_hash", "settings_hash"]
    copy_table(con, lake, "scan_predictions", dict.fromkeys(predictions, "null"), "range(0) t(i)", scans=processed)
    copy_table(
        con,
        lake,
        "study_settings",
        {"key": "'seed'", "value": "'0'", "section": "'study'", "read_by": "''"} | {"study_hash": SETTINGS_HASH},
        "range(1) t(i)",
    )


@contextlib.contextmanager
def bulk_event_writes(instance: dg.DagsterInstance):
    """Setting up only: the SQLite event log opens a database connection and syncs to disk for every
    event (~35 ms; 70,000 events would take 40 minutes). Here each of its databases keeps one
    connection without syncing, for this process; the rows written are the ones Dagster writes."""
    storage = instance.event_log_storage
    opened = {}

    @contextlib.contextmanager
    def connect(shard: str):
        if shard not in opened:
            with type(storage)._connect(storage, shard):  # creates the database and its tables
                pass
            engine = create_engine(storage.conn_string_for_shard(shard), poolclass=NullPool)
            opened[shard] = (engine, engine.connect())
            opened[shard][1].exec_driver_sql("pragma synchronous = off")
            opened[shard][1].commit()
        connection = opened[shard][1]
        with connection.begin():
            yield connection

    storage._connect = connect
    try:
        yield
    finally:
        del storage._connect
        for engine, connection in opened.values():
            connection.close()
            engine.dispose()


def _per_scan_order(graph) -> list[dg.AssetKey]:
    """The per-scan assets, each after the per-scan assets it reads."""
    keys, order = per_scan_keys(graph), []
    while len(order) < len(keys):
        order += sorted(
            (k for k in keys - set(order) if all(p in order or p not in keys for p in graph.get(k).parent_keys)),
            key=str,
        )
    return order


def write_instance(instance: dg.DagsterInstance, graph, cohort: Path, processed: list[str], new: list[str]) -> int:
    """The events a cohort's ingest and its scans' runs leave; returns how many were written."""
    instance.add_dynamic_partitions(scan_partitions.name, processed + new)
    events = 0

    def report(event) -> None:
        nonlocal events
        instance.report_runless_asset_event(event)
        events += 1

    def latest_ids(key: dg.AssetKey, kind: dg.DagsterEventType) -> dict[str, int]:
        return instance.event_log_storage.get_latest_storage_id_by_partition(key, kind)

    with bulk_event_writes(instance):
        report(
            dg.AssetMaterialization(
                "scans", metadata={COHORT_FINGERPRINT: cohort_fingerprint(cohort)}, tags={DATA_VERSION_TAG: "scans-1"}
            )
        )
        report(dg.AssetMaterialization(PROMOTIONS, tags={DATA_VERSION_TAG: "promotions-1"}))
        promoted = instance.fetch_materializations(PROMOTIONS, limit=1).records[0].storage_id
        for scan in processed + new:
            report(dg.AssetObservation(scan_inputs.key, partition=scan, tags={DATA_VERSION_TAG: f"inputs-{scan}"}))
        pointers = {scan_inputs.key: latest_ids(scan_inputs.key, dg.DagsterEventType.ASSET_OBSERVATION)}
        versions = {scan_inputs.key: "inputs"}
        for key in _per_scan_order(graph):
            node, name = graph.get(key), key.to_user_string()
            for scan in processed:
                tags = {CODE_VERSION_TAG: node.code_version, DATA_VERSION_TAG: f"{name}-{scan}"}
                for parent in node.parent_keys:
                    partitioned = parent != PROMOTIONS
                    version = f"{versions[parent]}-{scan}" if partitioned else "promotions-1"
                    tags[get_input_data_version_tag(parent)] = version
                    tags[get_input_event_pointer_tag(parent)] = str(pointers[parent][scan] if partitioned else promoted)
                metadata = {"rows": 10, "lake_file": f"lake/{key.path[-1]}/{scan}.parquet"}
                report(dg.AssetMaterialization(key, partition=scan, metadata=metadata, tags=tags))
            pointers[key] = latest_ids(key, dg.DagsterEventType.ASSET_MATERIALIZATION)
            versions[key] = name
    return events


def timed(step) -> tuple[float, object]:
    start = time.perf_counter()
    result = step()
    return time.perf_counter() - start, result


def requested_scans(result) -> set[str]:
    """The scans the run requests of a tick's result ask to process."""
    requests = result.run_requests if isinstance(result, dg.SensorResult) else result
    if isinstance(requests, dg.SkipReason) or requests is None:
        return set()
    requests = requests if isinstance(requests, list) else [requests]
    return {s for r in requests if r.job_name in (None, "process_scans") for s in _run_scans(r)}


def _run_scans(request: dg.RunRequest) -> list[str]:
    return request.run_config.get("ops", {}).get(BATCH_OP, {}).get("config", {}).get("scans", [])


def definitions_load_s(env: dict) -> float:
    """A new process (as the code server and each run) importing the platform and resolving its
    repository: seconds from the process start."""
    code = (
        "import time; start = time.perf_counter()\n"
        "from metorigin.definitions import build_definitions\n"
        "from metorigin.core.config import for_code_location\n"
        "build_definitions(for_code_location()).get_repository_def().asset_graph\n"
        "print(time.perf_counter() - start)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


ASSET_PAGE = """{
  assetNodeOrError(assetKey: {path: ["lesions"]}) { ... on AssetNode {
    partitionKeysByDimension { partitionKeys }
    partitionStats { numMaterialized numPartitions numFailed numMaterializing }
    assetPartitionStatuses { ... on DefaultPartitionStatuses { materializedPartitions failedPartitions } }
  } }
  assetOrError(assetKey: {path: ["lesions"]}) { ... on Asset {
    assetMaterializations(limit: 100) { partition timestamp runId }
  } }
}"""


def asset_page_s(env: dict, log: Path, n_registered: int, n_processed: int) -> float:
    """The median of three asks of the asset page's query for `lesions`, on dagster-webserver."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("dagster-webserver")), "-m", "metorigin.definitions"]
    with open(log, "w") as out:
        server = subprocess.Popen([*command, "-h", "127.0.0.1", "-p", str(port)], env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if graphql(port, "{ assetNodes { id } }")["assetNodes"]:
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dagster-webserver did not serve: {log.read_text()[-3000:]}") from None
            time.sleep(1)
        seconds = []
        for _ in range(3):
            spent, data = timed(lambda: graphql(port, ASSET_PAGE))
            seconds.append(spent)
        node = data["assetNodeOrError"]
        keys = node["partitionKeysByDimension"][0]["partitionKeys"]
        materialized = node["assetPartitionStatuses"]["materializedPartitions"]
        counted = node["partitionStats"]["numMaterialized"]
        if (len(keys), len(materialized), counted) != (n_registered, n_processed, n_processed):
            raise RuntimeError(
                f"the asset page shows {len(keys)} partitions, {len(materialized)} ({counted}) materialised "
                f"(expected {n_registered}, {n_processed})"
            )
        return statistics.median(seconds)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def set_up(work: Path, processed: list[str], new: list[str], variables: dict) -> None:
    """The cohort folder, the lake and the instance of `work` (any earlier ones removed)."""
    store, cohort, n = work / "store", work / "cohort", len(processed)
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(cohort, ignore_errors=True)
    start = time.perf_counter()
    write_cohort(cohort, processed + new)
    write_lake(
        store / "lake", (n + len(new)) * LESIONS_PER_SCAN, variables["feature_names"], variables["label_classes"],
        lesions_per_scan=LESIONS_PER_SCAN, per_scan_files=True,
    )  # fmt: skip
    for table in ("scan_integrity", "segmentations", "lesions", "radiomics_features"):  # the new scans: none yet
        for scan in new:
            (store / "lake" / table / f"{scan}.parquet").unlink()
    write_more_tables(store / "lake", processed, n * LESIONS_PER_SCAN * SLICES_PER_LESION)
    print(f"lake and cohort written ({time.perf_counter() - start:.0f} s)")
    home = use_store_instance(store)
    repository = build_definitions(RunConfig(cohort=str(cohort), store=str(store))).get_repository_def()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        start = time.perf_counter()
        events = write_instance(instance, repository.asset_graph, cohort, processed, new)
        print(f"instance: {n + len(new):,} partitions, {events:,} events ({time.perf_counter() - start:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=None, help="processed scans (default 10,000; 20 with --smoke)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the store goes (default: a temp dir)")
    parser.add_argument(
        "--reuse", action="store_true", help="measure the store an earlier run left in --workdir again (its setup "
        "takes ~6 minutes at 10,000 scans)"
    )  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="the same steps on 20 scans")
    args = parser.parse_args()
    if args.reuse and not args.workdir:
        parser.error("--reuse needs the --workdir of an earlier run")
    n = args.scans or (20 if args.smoke else 10_000)
    processed = [f"S{i}" for i in range(n)]
    new = [f"S{i}" for i in range(n, n + max(1, round(n * NEW_FRACTION)))]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="metorigin-scale-10k-"))
    store, cohort = work / "store", work / "cohort"
    variables = dbt_vars(get_settings("quick"))
    config = RunConfig(cohort=str(cohort), store=str(store), profile="quick")
    if not args.reuse:
        set_up(work, processed, new, variables)
    home = use_store_instance(store)
    config.write_for_instance(home)  # what the code location of the webserver and the new process build from
    files = sum(1 for _ in (store / "lake").glob("*/S*.parquet"))
    print(f"lake: {files:,} per-scan Parquet files for {n:,} processed scans")

    env = child_environment(DAGSTER_HOME=str(home), METORIGIN_STORE=str(store))  # dbt's profile reads the store
    repository = build_definitions(config).get_repository_def()
    resources = resources_for(config)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        figures = {"definitions load (new process)": (definitions_load_s(env), None)}
        context = dg.build_sensor_context(instance=instance, repository_def=repository, resources=resources)
        first, result = timed(lambda: new_scans_sensor(context))
        check("sensor, first tick", requested_scans(result), new)
        figures["sensor tick, first (asks about every scan)"] = (first, TARGET_TICK_S)
        context = dg.build_sensor_context(
            instance=instance, repository_def=repository, resources=resources, cursor=context.cursor
        )
        after, result = timed(lambda: new_scans_sensor(context))  # asks only about scans with new events
        figures["sensor tick, next"] = (after, TARGET_TICK_S)
        schedule = dg.build_schedule_context(
            instance=instance,
            repository_def=repository,
            resources=resources,
            scheduled_execution_time=datetime(2026, 11, 28, 2, tzinfo=timezone.utc),
        )
        nightly, result = timed(lambda: nightly_catch_up(schedule))
        check("nightly schedule tick", requested_scans(result), new)
        figures["nightly schedule tick"] = (nightly, TARGET_TICK_S)
        listing, waiting = timed(lambda: scans_awaiting_processing(instance, resources["store"], repository))
        check("scans awaiting processing", {s.scan_id for s in waiting}, new)
        figures["listing the scans awaiting processing"] = (listing, TARGET_TICK_S)
        # Another radiomics setting: every processed scan's features are stale, and the listing must
        # say so for each without asking Dagster's resolver scan by scan (15 minutes at 10,000).
        wider = work / "wider.yaml"
        wider.write_text("base: quick\nradiomics: {crop_margin_voxels: 3}\n")
        changed = build_definitions(config.replace(study_file=str(wider))).get_repository_def()
        stale_s, waiting = timed(lambda: scans_awaiting_processing(instance, resources["store"], changed))
        check(
            "scans awaiting processing after a radiomics setting changed", {s.scan_id for s in waiting}, processed + new
        )
        figures["deciding which scans are stale, every one (another radiomics setting)"] = (stale_s, TARGET_STALE_S)

    (store / ".build").mkdir(exist_ok=True)
    dbt_env = dict(env, METORIGIN_DUCKDB=str(store / ".build" / "feature_store.duckdb"))
    dbt = [str(Path(sys.executable).with_name("dbt")), "build", *FEATURE_STORE_MODELS, "--vars", json.dumps(variables)]
    dbt += ["--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR)]
    dbt += ["--target-path", str(work / "target"), "--log-path", str(work / "logs")]
    code, dbt_s, dbt_gb = run_dbt(dbt, dbt_env, work)
    if code:
        sys.exit(f"dbt build failed (exit code {code}):\n{(work / 'dbt.log').read_text()[-3000:]}")
    with duckdb.connect(str(store / ".build" / "feature_store.duckdb"), read_only=True) as con:
        built = con.execute("select count(distinct scan_id), count(*) from lesion_features").fetchone()
    if built != (n, n * LESIONS_PER_SCAN):
        sys.exit(
            f"lesion_features holds {built[1]} lesions of {built[0]} scans (expected {n * LESIONS_PER_SCAN} of {n})"
        )
    figures["dbt build of the feature store"] = (dbt_s, TARGET_DBT_S)
    figures["UI asset page query (GraphQL, lesions)"] = (
        asset_page_s(env, work / "webserver.log", n + len(new), n),
        None,
    )

    for name, (seconds, target) in figures.items():
        print(f"{name}: {seconds:.2f} s" + (f" (target < {target:g} s)" if target else ""))
    print(f"dbt build peak memory: {dbt_gb:.2f} GB (target < {TARGET_DBT_GB:g} GB)")
    ticks = max(s for name, (s, _) in figures.items() if "tick" in name or "listing" in name)
    print(f"ticks_s={ticks:.2f} dbt_s={dbt_s:.1f} dbt_gb={dbt_gb:.2f} stale_s={stale_s:.2f}")
    if args.workdir is None:
        shutil.rmtree(work)


def check(what: str, found: set[str], expected: list[str]) -> None:
    if found != set(expected):
        sys.exit(f"{what}: found {sorted(found)[:10]}... ({len(found)}), expected {len(expected)} scans")


if __name__ == "__main__":
    main()
