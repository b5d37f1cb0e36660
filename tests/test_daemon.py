"""The platform under its daemon, as a group runs it: `metorigin ui` (webserver and daemon) on a
store the CLI already filled, a new patient's scan dropped into the cohort folder, and the GraphQL
API polled until the scan is processed and the feature store rebuilt, the other scans untouched.

It drives the functions of benchmarks/daemon_speed.py (which measures the same on a bigger cohort):
this test is that benchmark's smoke run."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import dagster as dg
import dagster_webserver
import pytest

from benchmarks.daemon_speed import (
    daemon_scan_seconds,
    drop,
    graphql,
    hold_back,
    latest,
    run_seconds,
    serving,
    wait_until_built,
    wait_until_idle,
)
from metorigin.defs.common.names import BATCH_TAG
from tests.helpers import NOT_STUDY
from tests.test_cli import _cli

NEW_PATIENT, NEW_SCAN = "P008", "S0008"  # and its excluded second scan, S0010
PER_SCAN = ("scan_integrity", "segmentations", "lesions", "radiomics_features", "lesion_slices")


def _materialisations(instance: dg.DagsterInstance) -> dict[str, dict[str, int]]:
    """Per-scan asset -> {scan: storage id of its latest materialisation} (a new one, a new id)."""
    return {
        asset: {
            r.partition_key: r.storage_id
            for r in reversed(instance.fetch_materializations(dg.AssetKey(asset), 100).records)
        }
        for asset in PER_SCAN
    }


def launch_as_the_ui(port: int, key: list[str]) -> str:
    """The mutation the UI sends for "Materialize" on an asset page: a run of `__ASSET_JOB`."""
    path = json.dumps(key)
    result = graphql(
        port,
        'mutation { launchRun(executionParams: {selector: {repositoryLocationName: "metorigin.definitions", '
        f'repositoryName: "__repository__", pipelineName: "__ASSET_JOB", assetSelection: [{{path: {path}}}]}}}}) '
        "{ __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }",
    )["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def unserializable_shown(port: int) -> list[str]:
    """The asset pages' metadata entries that read "(unserializable)" and that the UI shows: dagster-dbt
    keeps its manifest and translator as Python objects in the metadata (it reads them back when a
    step runs), and the UI leaves those two labels out of the table it draws, by a set written in
    its bundle; were that set to lose them in an upgrade, they would be shown again."""
    nodes = graphql(
        port, "{ assetNodes { assetKey { path } metadataEntries { label ... on TextMetadataEntry { text } } } }"
    )["assetNodes"]
    bad = {e["label"] for n in nodes for e in n["metadataEntries"] if "(unserializable)" in (e.get("text") or "")}
    bundle = Path(dagster_webserver.__file__).parent / "webapp" / "build"
    texts = (path.read_text(errors="replace") for path in bundle.rglob("*.js"))
    hidden_in = [text for text in texts if '"dagster_dbt/dagster_dbt_translator"' in text]
    return sorted(label for label in bad if not any(f'"{label}"' in text for text in hidden_in))


def _processes_of(store: Path) -> list[int]:
    """Processes started for this store (webserver, daemon, code servers, run workers)."""
    marker = f"DAGSTER_HOME={store / '.dagster'}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_a_scan_dropped_into_the_cohort_reaches_the_feature_store_under_the_daemon(cohort, tmp_path):
    store, log = tmp_path / "store", tmp_path / "ui.log"
    # Four patients processed by the CLI first (fewer scans, a shorter test); one arrives later.
    patient_rows, scan_rows = hold_back(cohort, ["P005", "P006", "P007", NEW_PATIENT])
    patient_rows = [row for row in patient_rows if row.split(",")[0] == NEW_PATIENT]
    scan_rows = [row for row in scan_rows if row.split(",")[1] == NEW_PATIENT]
    first = _cli("run", "--cohort", cohort, "--store", store, "--select", NOT_STUDY, "--workers", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    instance = dg.DagsterInstance.from_config(str(store / ".dagster"))
    before = _materialisations(instance)
    instance.dispose()
    assert sorted(before["lesions"]) == [f"S000{i}" for i in range(1, 5)]

    with serving(cohort, store, log, args=("--workers", "2")) as (server, port):
        repos = graphql(
            port,
            "{ repositoriesOrError { ... on RepositoryConnection { nodes { sensors { name } jobs { name } } } } }",
        )["repositoriesOrError"]["nodes"]
        assert {"new_scans_sensor", "feature_store_after_a_batch"} <= {s["name"] for r in repos for s in r["sensors"]}
        jobs = {j["name"] for r in repos for j in r["jobs"]}
        assert {"ingest_cohort", "process_scans", "process_scan", "build_feature_store", "run_study"} <= jobs
        assert latest(port, ["lesions"], "S0002") is not None  # the UI shows what the CLI did: one instance
        assert unserializable_shown(port) == []  # every asset page's metadata reads as what it is

        dropped = time.time()
        assert drop(cohort, patient_rows, scan_rows) == [NEW_SCAN, "S0010"]
        published = wait_until_built(server, port, store, [NEW_SCAN], 150, log)  # its rows in lesion_features
        print(f"\ndropped scan -> its rows in lesion_features under the daemon: {published - dropped:.0f} s")
        wait_until_idle(port, 60)  # the build's last step, then nothing more: the batch is done
        ui_run = launch_as_the_ui(port, ["feature_store", "tumor_burden"])  # "Materialize" on its asset page
        wait_until_idle(port, 120)
    assert server.returncode == 0, log.read_text()[-3000:]  # SIGTERM stops it cleanly ...
    deadline = time.time() + 20
    while _processes_of(store) and time.time() < deadline:
        time.sleep(1)
    assert not _processes_of(store), "processes left running after SIGTERM"  # ... and all it started

    instance = dg.DagsterInstance.from_config(str(store / ".dagster"))
    try:
        after = _materialisations(instance)
        for asset in PER_SCAN:  # the other scans untouched: the same materialisations, nothing new
            assert {k: v for k, v in after[asset].items() if k != NEW_SCAN} == before[asset], asset
            assert NEW_SCAN in after[asset], asset
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": NEW_SCAN}))
        assert [run.job_name for run in runs] == ["process_scan"]  # one run for the scan, the named job ...
        (batch,) = instance.get_runs(dg.RunsFilter(job_name="process_scans"))
        assert batch.tags["dagster/sensor_name"] == "new_scans_sensor"
        assert runs[0].tags[BATCH_TAG] == batch.run_id  # ... inside the sensor's process_scans run
        batch = dg.RunsFilter(
            job_name="build_feature_store", tags={"dagster/sensor_name": "feature_store_after_a_batch"}
        )
        assert len(instance.get_runs(batch)) == 1  # the feature store rebuilt once, after the scan
        assert len(daemon_scan_seconds(instance)) == 1
        assert len(run_seconds(instance, "ingest_cohort")) == 1  # the drop, not the start
        # The UI's launch is a run of Dagster's implicit job; it ran as the named jobs do: queued as a
        # store writer (one at a time), its steps in the run's own process, and it succeeded.
        launched = instance.get_run_by_id(ui_run)
        assert launched.job_name == "__ASSET_JOB" and launched.status == dg.DagsterRunStatus.SUCCESS
        assert launched.tags.get("metorigin/writes_store") == "true"
        engine = [e.message for e in instance.all_logs(ui_run) if e.dagster_event and e.dagster_event.is_engine_event]
        assert any("in process" in m for m in engine) and not any("multiprocess" in m for m in engine), engine
    finally:
        instance.dispose()
    assert os.path.exists(store / ".dagster" / "metorigin_store.txt")


def _wait_until_none_of(store: Path, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _processes_of(store)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.mark.slow
def test_metorigin_ui_killed_with_sigkill_takes_its_webserver_and_daemon_with_it(cohort, tmp_path):
    """A `kill -9` (or the OOM killer) gives `metorigin ui` no chance to stop what it started: the
    webserver, daemon and code servers must still end, freeing the port and the store (issue 28)."""
    store = tmp_path / "store"
    try:
        with serving(cohort, store, tmp_path / "ui.log", args=("--workers", "1")) as (server, port):
            assert len(_processes_of(store)) >= 3  # webserver, daemon, code server: what must not outlive it
            server.send_signal(signal.SIGKILL)  # the `metorigin ui` process only, as `kill -9 PID` does
            assert server.wait(timeout=10) == -signal.SIGKILL
            left = _wait_until_none_of(store, 30)
            assert not left, f"still running 30 s after the kill: {left}"
            with socket.socket() as probe:  # the port is free again: a new `metorigin ui` can have it
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do; fails while one listens
                probe.bind(("127.0.0.1", port))
    finally:
        for pid in _processes_of(store):  # on failure, nothing of it outlives the test
            os.kill(pid, signal.SIGKILL)
