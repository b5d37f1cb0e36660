"""The platform under its daemon against the CLI: per-scan run time, the ingest run, and the time
from dropping scans into the cohort folder to their rows in `lesion_features`.

A cohort is processed by `metorigin run` (the feature store, not the study) with `--drop` patients
held back, then run again (the second, incremental run). `metorigin ui` (webserver and daemon) is
started on the store, the held-back patients and scans are dropped into the cohort folder, and the
GraphQL API is polled until their per-scan assets and then the feature store are materialised.
Per-scan costs come from the store's Dagster instance: the CLI's from its first per-scan run's
start to its last one's end, and the daemon's `process_scans` runs from launch to end (a new
process: import, load the definitions, then one per-scan run per scan of the batch), each divided
by its scans. A run's start is paid once per batch: the ratio falls as batches grow (`--drop`).

    .venv/bin/python benchmarks/daemon_speed.py --cohort demo/cohort [--drop 3] [--workdir DIR]
    .venv/bin/python benchmarks/daemon_speed.py --smoke   # a synthetic 8-patient cohort, 1 dropped

Last line: `first_run_s=... second_run_s=... drop_to_lesion_features_s=... cli_scan_s=...
daemon_scan_s=... daemon_to_cli_ratio=... (target <= 1.5) daemon_ingest_s=...`.
tests/test_daemon.py drives the same functions on the tiny test cohort, so this code cannot rot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a plain checkout too

from metorigin.core.store import Store  # noqa: E402
from metorigin.defs.common.names import BATCH_TAG  # noqa: E402
from metorigin.runtime.runner import LAUNCHED_HERE  # noqa: E402

BIN = Path(sys.executable).parent
SENSOR_INTERVAL_S = 2
TARGET_RATIO = 1.5
NOT_STUDY = "not group:study"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


def latest(port: int, path: list[str], partition: str | None = None) -> dict | None:
    """The asset's (partition's) latest materialisation as the UI shows it: run id and time (ms)."""
    partitions = f'partitions: ["{partition}"], ' if partition else ""
    data = graphql(
        port,
        f"{{ assetOrError(assetKey: {{path: {json.dumps(path)}}}) {{ ... on Asset {{ "
        f"assetMaterializations({partitions}limit: 1) {{ runId timestamp }} }} }} }}",
    )
    found = data["assetOrError"].get("assetMaterializations") or []
    return found[0] if found else None


def hold_back(cohort: Path, patients: list[str]) -> tuple[list[str], list[str]]:
    """Take patients and their scans out of the cohort's CSVs; return their rows (patients, scans)."""
    held = {}
    for name, column in (("patients.csv", 0), ("scans.csv", 1)):
        lines = (cohort / name).read_text().splitlines()
        held[name] = [line for line in lines[1:] if line.split(",")[column] in patients]
        kept = [line for line in lines if line not in held[name]]
        (cohort / name).write_text("\n".join(kept) + "\n")
    return held["patients.csv"], held["scans.csv"]


def drop(cohort: Path, patient_rows: list[str], scan_rows: list[str]) -> list[str]:
    """Drop scans into the cohort as a user does: files copied into `incoming/`, rows appended.
    Returns the dropped scans that the study includes (NIfTI image and mask rows)."""
    incoming = cohort / "incoming"
    incoming.mkdir(exist_ok=True)
    rows = []
    for row in scan_rows:
        fields = row.split(",")
        for column in (2, 3):  # image, mask
            source = cohort / fields[column]
            target = incoming / f"{fields[0]}-{source.parent.name}{''.join(source.suffixes)}"
            (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
            fields[column] = target.relative_to(cohort).as_posix()
        rows.append(",".join(fields))
    for name, new in (("patients.csv", patient_rows), ("scans.csv", rows)):
        text = (cohort / name).read_text()
        (cohort / name).write_text(text + ("" if text.endswith("\n") else "\n") + "\n".join(new) + "\n")
    return [row.split(",")[0] for row in rows]


@contextlib.contextmanager
def serving(cohort: Path, store: Path, log_path: Path, args: tuple = ()):
    """`metorigin ui` on the store, yielding its port once the code location is loaded; stopped with
    SIGTERM (as a service manager stops it) when the block ends. The exit code is in `.returncode`."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("METORIGIN_", "DAGSTER_HOME"))}
    environment |= {"METORIGIN_SENSOR_INTERVAL_S": str(SENSOR_INTERVAL_S)}
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [str(BIN / "metorigin"), "ui", "--cohort", str(cohort), "--store", str(store), "--port", str(port), *args],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_for_the_ui(server, port, log_path)
            yield server, port
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            finally:
                if server.poll() is None:
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait()


def _wait_for_the_ui(server: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                break
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(f"metorigin ui exited: {log.read_text()[-3000:]}") from None
            if time.monotonic() > deadline:
                raise TimeoutError("the UI did not come up in 180 s") from None
            time.sleep(1)
    for _ in range(90):  # the code location loads after the server answers
        if graphql(port, "{ assetNodes { assetKey { path } } }")["assetNodes"]:
            return
        time.sleep(1)
    raise TimeoutError("the code location did not load in 90 s")


def included_once_ingested(
    server: subprocess.Popen, port: int, store: Path, scans: list[str], since: float, log: Path
) -> list[str]:
    """The dropped scans the study includes, once the daemon's ingest has read them."""
    deadline = time.time() + 300
    while not ((ingested := latest(port, ["scans"])) and float(ingested["timestamp"]) / 1000 > since):
        if server.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"no ingest of the dropped scans: {log.read_text()[-3000:]}")
        time.sleep(1)
    table = Store(store).read_lake("scans")
    return sorted(set(scans) & set(table.loc[table["included"], "scan_id"]))


def newest_per_partition(port: int, path: list[str], partitions: list[str]) -> dict[str, float]:
    """partition -> time (ms) of its newest materialisation, for those that have one: one query."""
    data = graphql(
        port,
        f"{{ assetOrError(assetKey: {{path: {json.dumps(path)}}}) {{ ... on Asset {{ "
        f"assetMaterializations(partitions: {json.dumps(partitions)}) {{ partition timestamp }} }} }} }}",
    )
    newest = {}
    for entry in data["assetOrError"].get("assetMaterializations") or []:
        newest[entry["partition"]] = max(newest.get(entry["partition"], 0.0), float(entry["timestamp"]))
    return newest


def wait_until_built(
    server: subprocess.Popen, port: int, store: Path, scans: list[str], timeout_s: float, log: Path
) -> float:
    """Poll (every 2 s: the UI shares the machine with the runs it watches) until every scan's
    `lesions` partition is materialised and its rows are in the published `lesion_features` (the
    feature store is published when its whole build step succeeds, after its materialisations);
    returns when they were seen (epoch seconds)."""
    deadline = time.time() + timeout_s
    while True:
        processed = newest_per_partition(port, ["lesions"], scans)
        if len(processed) == len(scans) and Store(store).duckdb_path.exists():
            with Store(store).connect_read_only() as con:
                found = con.execute(
                    "select count(distinct scan_id) from lesion_features where scan_id in (select unnest(?))", [scans]
                ).fetchone()[0]
            if found == len(scans):
                return time.time()
        if server.poll() is not None:
            raise RuntimeError(f"metorigin ui exited: {log.read_text()[-3000:]}")
        if time.time() > deadline:
            raise TimeoutError(f"not processed and published in {timeout_s:.0f} s: {processed}")
        time.sleep(2)


def wait_until_idle(port: int, timeout_s: float) -> None:
    """Until no run is queued or in progress (the feature store's last dbt step, after publication)."""
    deadline = time.time() + timeout_s
    statuses = "[QUEUED, NOT_STARTED, STARTING, STARTED]"
    query = f"{{ runsOrError(filter: {{statuses: {statuses}}}) {{ ... on Runs {{ results {{ runId }} }} }} }}"
    while graphql(port, query)["runsOrError"]["results"]:
        if time.time() > deadline:
            raise TimeoutError(f"runs still in progress after {timeout_s:.0f} s")
        time.sleep(2)


def _by_sensor(instance: dg.DagsterInstance, job: str) -> list[tuple[str, float]]:
    """(run id, seconds from launch to end) of each successful run of `job` a sensor launched: from
    the launch, so with the new process's start and imports."""
    return [
        (record.dagster_run.run_id, record.end_time - _launched_at(instance, record.dagster_run.run_id))
        for record in instance.get_run_records(dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.SUCCESS]))
        if "dagster/sensor_name" in record.dagster_run.tags and record.end_time
    ]


def run_seconds(instance: dg.DagsterInstance, job: str) -> list[float]:
    """Wall time of each successful run of `job` a sensor launched, from its launch to its end."""
    return [seconds for _, seconds in _by_sensor(instance, job)]


def _launched_at(instance: dg.DagsterInstance, run_id: str) -> float:
    (starting,) = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_STARTING).records
    return starting.event_log_entry.timestamp


def cli_scan_seconds(instance: dg.DagsterInstance) -> float:
    """The CLI's cost per scan: from its first per-scan run's start to its last one's end (with what
    it does between them) over the scans; its process start and ingest are paid once for all."""
    records = [
        record
        for record in instance.get_run_records(dg.RunsFilter(job_name="process_scan", tags=LAUNCHED_HERE))
        if record.start_time and record.end_time
    ]
    scans = {record.dagster_run.tags["dagster/partition"] for record in records}
    return (max(r.end_time for r in records) - min(r.start_time for r in records)) / len(scans)


def daemon_scan_seconds(instance: dg.DagsterInstance) -> list[float]:
    """Per scan, each sensor-launched `process_scans` run's time from launch to end over its scans."""
    seconds = []
    for run_id, elapsed in _by_sensor(instance, "process_scans"):
        scans = instance.get_run_ids(dg.RunsFilter(job_name="process_scan", tags={BATCH_TAG: run_id}))
        seconds += [elapsed / len(scans)] * len(scans)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cohort", type=Path, help="a cohort folder (copied); default: synthesise one")
    parser.add_argument("--drop", type=int, default=3, help="patients held back and dropped in under the daemon")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="a synthetic 8-patient cohort, one dropped")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="metorigin-daemon-"))
    cohort, store = work / "cohort", work / "store"
    if args.smoke or not args.cohort:
        subprocess.run(
            [str(BIN / "metorigin"), "synth", "--out", str(cohort), "--scale", "0.05", "--matrix", "64"], check=True
        )
        args.drop = 1 if args.smoke else args.drop
    else:
        shutil.copytree(args.cohort, cohort, symlinks=True)
    patients = [line.split(",")[0] for line in (cohort / "patients.csv").read_text().splitlines()[1:]]
    patient_rows, scan_rows = hold_back(cohort, patients[-args.drop :])
    timings = {}
    for name in ("first_run_s", "second_run_s"):
        start = time.monotonic()
        subprocess.run(
            [
                str(BIN / "metorigin"),
                "run",
                "--cohort",
                str(cohort),
                "--store",
                str(store),
                "--select",
                "not group:study",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        timings[name] = time.monotonic() - start
    with serving(cohort, store, work / "ui.log") as (server, port):
        dropped_at = time.time()
        scans = drop(cohort, patient_rows, scan_rows)
        included = included_once_ingested(server, port, store, scans, dropped_at, work / "ui.log")
        built_at = wait_until_built(server, port, store, included, 900, work / "ui.log")
        wait_until_idle(port, 300)
    timings["drop_to_lesion_features_s"] = built_at - dropped_at
    instance = dg.DagsterInstance.from_config(str(store / ".dagster"))
    cli = cli_scan_seconds(instance)
    daemon = statistics.median(daemon_scan_seconds(instance))
    ingest = statistics.median(run_seconds(instance, "ingest_cohort"))
    instance.dispose()
    timings |= {"cli_scan_s": cli, "daemon_scan_s": daemon, "daemon_to_cli_ratio": daemon / cli}
    timings["daemon_ingest_s"] = ingest
    print(f"work folder: {work}")
    print(
        " ".join(
            f"{k}={v:.2f}" + (f" (target <= {TARGET_RATIO})" if k.endswith("ratio") else "") for k, v in timings.items()
        )
    )


if __name__ == "__main__":
    main()
