"""The platform's overhead on the per-scan work: `metorigin run` against a plain loop of the same
domain functions (the floor), on one synthetic cohort, in one run.

The cohort is written once by the package's generator (`metorigin synth`; by default the demo's:
seed 7, scale 1, 78 included scans of 256 x 256). Then, each timed end to end as its own process:

- the platform: `metorigin run --select 'group:cohort or group:imaging' --workers W
  --scans-at-once W` on a fresh store, then the same command again, unchanged (the re-run);
- the floor: this file with `--floor`, a plain loop over the included scans in W spawned
  processes. It writes the cohort tables with the functions the cohort assets call, then for each
  scan calls, in order, the functions the per-scan step calls (metorigin/imaging/scan_steps.py):
  the sha256 fingerprints, the full decode and its checks, the segmentation, the lesions and their
  QC picture, the radiomics crops and extraction (one core per scan: W scans at a time on W cores,
  as the platform shares them) and the DenseNet slices; each file is read once, and the same label
  maps, lesion maps, QC pictures, slice stacks and Parquet rows (conformed, with the same settings
  hashes) go into a second store. A fresh store promotes no model: `model_promotions` and each scan's
  `scan_predictions` are empty tables of their schemas, written without importing the study's
  stack. It leaves out what produces no row: the Great Expectations checks, data versions, cohort
  fingerprints and the scans' input observations, Dagster metadata (the QC picture as base64).

Both stores must then hold equal lake tables (every table, every partition, every value; only
`scan_integrity.checked_at`, the time of the check, is ignored) and equal artefacts (the benchmark
exits with an error otherwise). The platform's time is split by the events of its store's Dagster
instance and the times its output lines arrived (the phases printed say what each holds; finding
the scan's row, which no event marks, is timed apart with the step's own call). The
machine's own two-process scaling (two copies of pure CPU work on 2 processes against one after
the other, as radiomics_throughput.py does) is measured before, between and after the runs: on a
shared machine a ratio counts where that scaling is at least 1.7.

    .venv/bin/python benchmarks/imaging_overhead.py [--scale 1.0] [--matrix 256] [--workers 2]
    .venv/bin/python benchmarks/imaging_overhead.py --smoke   # 4 scans of 48 x 48: runs, compares; speeds say nothing

Last line: `platform_vs_floor=<x> platform_s=<y> floor_s=<z>` (targets: at most 1.5 on 2 cores,
and the unchanged re-run, printed on the line before, at most 10 s).
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a plain checkout too

from benchmarks.radiomics_throughput import spin  # noqa: E402  (the same pure CPU work, the same scaling)

BIN = Path(sys.executable).parent
SELECTION = "group:cohort or group:imaging"
SMOKE_PATIENTS = 4  # their scans: the DICOM series, the mask on another grid, an excluded scan
TARGET_RATIO = 1.5
TARGET_RERUN_S = 10.0
MIN_SCALING = 1.7
# Columns that legitimately differ between two stores computed from the same cohort.
IGNORED = {"scan_integrity": ["checked_at"]}
PER_SCAN_STEPS = ("scan_imaging", "scan_predictions")  # a scan's run: its imaging assets, then its predictions
PROMOTIONS_LOG = "promotions.jsonl"  # inference/registry.py's (importing it imports the study's stack)


# ---------------------------------------------------------------------------------------------
# The machine's two-process scaling


def spinners() -> ProcessPoolExecutor:
    """Two processes for `machine_scaling`, started once (they sleep while the runs are timed)."""
    pool = ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"))
    list(pool.map(spin, range(2)))
    return pool


def machine_scaling(pool: ProcessPoolExecutor, repeats: int) -> float:
    """Two spins one after the other over two spins in two processes (median of `repeats`)."""
    serial, pair = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        spin(), spin()
        serial.append(time.perf_counter() - start)
        start = time.perf_counter()
        list(pool.map(spin, range(2)))
        pair.append(time.perf_counter() - start)
    return statistics.median(serial) / statistics.median(pair)


def keep_patients(cohort: Path, n: int) -> None:
    """Only the first `n` patients of a generated cohort and their scans (the generator writes at least 8)."""
    import csv

    with open(cohort / "patients.csv", newline="") as fh:
        patients = list(csv.reader(fh))
    kept = {row[0] for row in patients[1 : n + 1]}
    for name, column in (("patients.csv", 0), ("scans.csv", 1)):
        with open(cohort / name, newline="") as fh:
            rows = list(csv.reader(fh))
        with open(cohort / name, "w", newline="") as fh:
            csv.writer(fh).writerows([rows[0]] + [row for row in rows[1:] if row[column] in kept])


# ---------------------------------------------------------------------------------------------
# The floor: the same work in a plain loop


def floor_config(cohort: str, store: str, workers: int):
    """The configuration (so the study) `metorigin run --workers W --scans-at-once W` runs with (core/config.py)."""
    from metorigin.core.config import RunConfig

    return RunConfig.of(cohort, store, workers=workers, scans_at_once=workers)


def _floor_worker_start() -> None:
    """A floor process computes one scan at a time on one core (as the platform's extraction workers do)."""
    import SimpleITK as sitk

    from metorigin.core.config import quiet_libraries
    from metorigin.imaging import lesions, qc, radiomics, slices  # noqa: F401 - imported once, before the clock of a scan

    quiet_libraries()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def _ready(_: int = 0) -> int:
    return os.getpid()


def floor_scan(row: dict, cohort: str, store_root: str, workers: int) -> tuple[str, bool, dict]:
    """One scan's per-scan work, each file read once: (scan id, passed its checks, seconds per phase).

    The functions the per-scan assets call (imaging/scan_steps.py), in their order, without Dagster:
    the check always decodes (a fresh store has no check to reuse), each lake table is written here."""
    from metorigin.core.store import Store
    from metorigin.imaging import scan_steps

    seconds: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(phase: str) -> None:
        now = time.perf_counter()
        seconds[phase] = seconds.get(phase, 0.0) + now - clock[0]
        clock[0] = now

    # W scans at a time on W cores, each extracting on one (the platform gives each scan its share too).
    study = floor_config(cohort, store_root, workers).replace(workers=1).study()
    assert study.segmentation.method == "provided", "the floor reads the cohort's masks"
    scan = scan_steps.Scan(row, Path(cohort), Store(store_root), study)
    fingerprints = scan_steps.file_fingerprints(scan)
    lap("hash")
    record = scan_steps.check_files(scan, fingerprints)
    tables = {"scan_integrity": scan_steps.integrity_rows(scan, record)}
    lap("decode and checks")
    if record["status"] != "passed":  # the blocking check stops the scan's other steps
        scan.store.write_lake("scan_integrity", tables["scan_integrity"], scan.scan_id)
        lap("lake")
        return scan.scan_id, False, seconds
    tables["segmentations"], labels = scan_steps.segment(scan)
    lap("segmentation")
    tables["lesions"], lesion_map, _picture = scan_steps.find_lesions(scan, labels)
    lap("lesions and QC picture")
    tables["radiomics_features"] = scan_steps.radiomics_rows(scan, lesion_map, tables["lesions"])
    lap("radiomics")
    tables["lesion_slices"] = scan_steps.slice_rows(scan, lesion_map, tables["lesions"])
    lap("slices")
    for name, frame in tables.items():
        scan.store.write_lake(name, frame, scan.scan_id)
    lap("lake")
    return scan.scan_id, True, seconds


def floor_cohort_tables(cohort: Path, store_root: Path, workers: int):
    """The cohort group's tables with the functions its assets call (study_settings, patients,
    scans, model_promotions); returns the stored `scans` table (as the per-scan assets read it)."""
    import pandas as pd

    from metorigin.core.forgetting import forgotten_patients
    from metorigin.core.manifest import bind_study, settings_table
    from metorigin.core.schemas import MODEL_PROMOTIONS, PATIENTS, SCANS, conform
    from metorigin.core.store import Store
    from metorigin.imaging.cohort import (
        PATIENTS_CSV,
        QC_CSV,
        SCANS_CSV,
        read_patients_csv,
        read_qc_csv,
        read_scans_csv,
        validate_patients,
        validate_scans,
    )
    from metorigin.imaging.forgotten import qc_without_forgotten, without_forgotten

    config = floor_config(str(cohort), str(store_root), workers)
    study, store = config.study(), Store(store_root)
    bind_study(store, config.replace(executor="", dask_address="", scans_at_once=0).study())  # as `metorigin run` does
    store.write_lake("study_settings", settings_table(study))
    assert not (store.root / PROMOTIONS_LOG).exists(), "a fresh store: no promotion to log"
    store.write_lake("model_promotions", conform(pd.DataFrame(columns=MODEL_PROMOTIONS.names), MODEL_PROMOTIONS))
    gone = forgotten_patients(store)
    frame, _ = without_forgotten(read_patients_csv(cohort, study.label), PATIENTS_CSV, gone)
    patients, _errors = validate_patients(frame, study.label)
    patients = conform(patients.assign(settings_hash=study.step_hash("cohort")), PATIENTS)
    store.write_lake("patients", patients)
    listed = read_scans_csv(cohort)
    qc, _ = qc_without_forgotten(read_qc_csv(cohort), QC_CSV, listed, gone)
    scans, _errors = validate_scans(
        without_forgotten(listed, SCANS_CSV, gone)[0], patients, frame, cohort, study.inclusion, qc
    )
    store.write_lake("scans", conform(scans.assign(settings_hash=study.step_hash("cohort")), SCANS))
    return store.read_lake("scans")


def run_floor(cohort: Path, store_root: Path, workers: int) -> None:
    """The floor, in this process and `workers` spawned ones; prints its phases as one JSON line."""
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, context, initializer=_floor_worker_start) as pool:
        ready = [pool.submit(_ready) for _ in range(workers)]  # the workers import while the cohort is read
        import pandas as pd

        from metorigin.core.schemas import SCAN_PREDICTIONS, conform
        from metorigin.core.store import Store

        imported = time.perf_counter()
        scans = floor_cohort_tables(cohort, store_root, workers)
        cohort_done = time.perf_counter()
        for future in ready:
            future.result()
        workers_ready = time.perf_counter()
        included = scans[scans["included"]].to_dict("records")
        futures = [pool.submit(floor_scan, row, str(cohort), str(store_root), workers) for row in included]
        phases: dict[str, float] = {}
        store, empty = Store(store_root), conform(pd.DataFrame(columns=SCAN_PREDICTIONS.names), SCAN_PREDICTIONS)
        assert not (store.root / PROMOTIONS_LOG).exists(), "a fresh store promotes no model: nothing to score"
        for future in futures:
            scan_id, passed, seconds = future.result()
            for phase, value in seconds.items():
                phases[phase] = phases.get(phase, 0.0) + value
            if passed:  # scan_predictions: no model promoted (a fresh store), no rows, as the asset finds
                store.write_lake("scan_predictions", empty, scan_id)
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "start_s": imported - started,
                "cohort_s": cohort_done - imported,
                "workers_wait_s": workers_ready - cohort_done,
                "scans_s": done - workers_ready,
                "n_scans": len(included),
                "summed": phases,
            }
        )
    )


# ---------------------------------------------------------------------------------------------
# Running a command, with the time each output line arrived


def clean_environment() -> dict:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("METORIGIN_", "DAGSTER_HOME"))}
    return environment | {"GX_ANALYTICS_ENABLED": "false", "DAGSTER_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}


def timed_command(command: list[str], log: Path) -> tuple[float, float, list[tuple[float, str]]]:
    """(epoch start, seconds, [(epoch, stdout line)]); stderr goes to `log`; a failure exits."""
    lines: list[tuple[float, str]] = []
    with open(log, "w") as err:
        start, clock = time.time(), time.perf_counter()
        process = subprocess.Popen(
            command, env=clean_environment(), stdout=subprocess.PIPE, stderr=err, text=True, encoding="utf-8"
        )
        reader = threading.Thread(
            target=lambda: [lines.append((time.time(), ln.rstrip("\n"))) for ln in process.stdout]
        )
        reader.start()
        code = process.wait()
        seconds = time.perf_counter() - clock
        reader.join()
    if code != 0:
        tail = "\n".join(text for _, text in lines[-20:])
        sys.exit(f"{' '.join(command[:3])} ... failed ({code}):\n{tail}\n{log.read_text()[-3000:]}")
    return start, seconds, lines


def first_line(lines: list[tuple[float, str]], test) -> float | None:
    return next((at for at, text in lines if test(text)), None)


# ---------------------------------------------------------------------------------------------
# The platform's phases, from its store's Dagster instance


def run_events(home: Path, since: float, until: float) -> list[tuple]:
    """(job, partition, created, started, ended, [(epoch, event type or LOG, step key)]) per run."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        runs = []
        for record in instance.get_run_records():
            created = record.create_timestamp.timestamp()
            if not since <= created <= until:
                continue
            logs = [
                (e.timestamp, e.dagster_event.event_type_value if e.dagster_event else "LOG", e.step_key)
                for e in instance.all_logs(record.dagster_run.run_id)
            ]
            run = record.dagster_run
            runs.append(
                (run.job_name, run.tags.get("dagster/partition"), created, record.start_time, record.end_time, logs)
            )
        return sorted(runs, key=lambda r: r[2])
    finally:
        instance.dispose()


def step_phases(logs: list[tuple]) -> dict[str, dict[str, float]]:
    """step -> seconds of: its inputs loaded (start to the last STEP_INPUT), its compute (what is
    left), writing its lake files (the IO manager: each STEP_OUTPUT to its materialisation event),
    the materialisation events' own writes (to each HANDLED_OUTPUT), and what follows its last
    output (its last checks, the check events and STEP_SUCCESS)."""
    steps: dict[str, dict[str, float]] = {}
    by_step: dict[str, list] = {}
    for at, kind, step in logs:
        if step:
            by_step.setdefault(step, []).append((at, kind))
    for step, events in by_step.items():
        times: dict[str, list[float]] = {}
        for at, kind in events:
            times.setdefault(kind, []).append(at)
        if "STEP_START" not in times or "STEP_OUTPUT" not in times:
            continue
        start, end = times["STEP_START"][0], (times.get("STEP_SUCCESS") or times.get("STEP_FAILURE"))[-1]
        loaded = max(times.get("STEP_INPUT", [start]))
        lake = event = 0.0
        handled = loaded
        # An output's STEP_OUTPUT, its ASSET_MATERIALIZATION, its HANDLED_OUTPUT, one after the other
        # (a check's STEP_OUTPUT is followed by its evaluation instead).
        for (out_at, out), (mat_at, mat), (done_at, done) in zip(events, events[1:], events[2:]):
            if (out, mat, done) == ("STEP_OUTPUT", "ASSET_MATERIALIZATION", "HANDLED_OUTPUT"):
                lake, event, handled = lake + mat_at - out_at, event + done_at - mat_at, done_at
        steps[step] = {
            "total": end - start,
            "inputs": loaded - start,
            "compute": handled - loaded - lake - event,
            "lake": lake,
            "event": event,
            "checks": end - handled,
        }
    return steps


BOOKKEEPING = {  # consecutive events with nothing but Dagster's own work between them
    ("ASSET_MATERIALIZATION", "HANDLED_OUTPUT"),
    ("LOADED_INPUT", "STEP_INPUT"),
    ("STEP_SUCCESS", "STEP_START"),
    ("PIPELINE_START", "ENGINE_EVENT"),
    ("ENGINE_EVENT", "RESOURCE_INIT_STARTED"),
}


def platform_phases(runs: list[tuple]) -> dict:
    """Sums over the per-scan runs (seconds of one worker each: with W at a time, wall ~ sum / W)."""
    out = {"runs": 0, "before_first_step": 0.0, "between_steps": 0.0, "after_last_step": 0.0, "steps": {}}
    out |= {"events": 0, "logs": 0, "gaps": [], "run_total": 0.0}
    for job, _partition, created, started, ended, logs in runs:
        if job != "process_scan":
            continue
        out["runs"] += 1
        out["run_total"] += ended - created
        starts = [at for at, kind, _ in logs if kind == "STEP_START"]
        successes = [at for at, kind, _ in logs if kind in ("STEP_SUCCESS", "STEP_FAILURE")]
        out["before_first_step"] += min(starts) - created
        out["after_last_step"] += ended - max(successes)
        out["between_steps"] += sum(b - a for a, b in zip(sorted(successes)[:-1], sorted(starts)[1:]))
        for step, phases in step_phases(logs).items():
            total = out["steps"].setdefault(step, {})
            for phase, value in phases.items():
                total[phase] = total.get(phase, 0.0) + value
        out["events"] += sum(kind != "LOG" for _, kind, _ in logs)
        out["logs"] += sum(kind == "LOG" for _, kind, _ in logs)
        out["gaps"] += [b[0] - a[0] for a, b in zip(logs, logs[1:]) if (a[1], b[1]) in BOOKKEEPING]
    return out


def reading_the_scan(store_root: Path, sample: int) -> tuple[float, int]:
    """Seconds the scan's step spends finding its row of the stored `scans` table (the floor has the
    row in memory; both hash and decode the files once), timed here with the same call on up to
    `sample` scans (warm cache). Returns (per scan, sampled)."""
    from metorigin.core.store import Store
    from metorigin.defs.imaging.assets import scan_row

    store = Store(store_root)
    scans = store.read_lake("scans")
    ids = sorted(scans.loc[scans["included"], "scan_id"])[:sample]
    start = time.perf_counter()
    for scan_id in ids:
        scan_row(store, scan_id)
    return (time.perf_counter() - start) / len(ids), len(ids)


# ---------------------------------------------------------------------------------------------
# Both stores hold the same


def compare_stores(one: Path, two: Path) -> tuple[int, int, int]:
    """Every lake table and artefact of `one` equal in `two`; (tables, partitions, artefacts) compared."""
    import numpy as np
    import pandas as pd
    import SimpleITK as sitk

    from metorigin.core.store import Store

    a, b = Store(one), Store(two)
    tables = sorted(p.name for p in a.lake.iterdir() if p.is_dir())
    assert tables == sorted(p.name for p in b.lake.iterdir() if p.is_dir()), "the lakes hold different tables"
    partitions = 0
    for table in tables:
        keys = a.lake_partitions(table)
        assert keys == b.lake_partitions(table), f"{table}: different partitions"
        partitions += len(keys)
        left, right = (s.read_lake(table).drop(columns=IGNORED.get(table, [])) for s in (a, b))
        order = [c for c in left.columns if left[c].dtype.kind not in "fc"]
        left, right = (f.sort_values(order, kind="stable").reset_index(drop=True) for f in (left, right))
        try:
            pd.testing.assert_frame_equal(left, right, check_exact=True)
        except AssertionError as diff:
            sys.exit(f"the lake table {table} differs between the platform and the floor:\n{diff}")
    files = sorted(p.relative_to(a.artifacts) for p in a.artifacts.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b.artifacts) for p in b.artifacts.rglob("*") if p.is_file()), "artefacts"
    for name in files:
        x, y = a.artifacts / name, b.artifacts / name
        if name.suffix == ".npz":
            with np.load(x) as p, np.load(y) as q:
                same = all(np.array_equal(p[k], q[k]) for k in p.files) and p.files == q.files
        elif name.name.endswith(".nii.gz"):
            same = gzip.decompress(x.read_bytes()) == gzip.decompress(y.read_bytes())
            if not same:  # the same voxels and grid written twice may differ in the header's padding
                p, q = sitk.ReadImage(str(x)), sitk.ReadImage(str(y))
                same = np.array_equal(sitk.GetArrayViewFromImage(p), sitk.GetArrayViewFromImage(q))
                same &= p.GetOrigin() == q.GetOrigin() and p.GetSpacing() == q.GetSpacing()
        else:
            same = x.read_bytes() == y.read_bytes()
        if not same:
            sys.exit(f"the artefact {name} differs between the platform and the floor")
    return len(tables), partitions, len(files)


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="cohort size, 1.0 = the demo's 78 included scans")
    parser.add_argument("--matrix", type=int, default=256, help="in-plane voxels (the demo's: 256)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2, help="processes: the platform's and the floor's")
    parser.add_argument("--cohort", type=Path, default=None, help="an existing cohort (default: synthesise one)")
    parser.add_argument("--workdir", type=Path, default=None, help="kept afterwards (default: a temporary one)")
    parser.add_argument("--smoke", action="store_true", help="4 scans of 48 x 48: runs and compares, in a minute")
    parser.add_argument("--floor", nargs=3, metavar=("COHORT", "STORE", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        return run_floor(Path(args.floor[0]), Path(args.floor[1]), int(args.floor[2]))
    if args.smoke:
        args.scale, args.matrix = 0.05, 48
    repeats = 1 if args.smoke else 5

    work = Path(args.workdir or tempfile.mkdtemp(prefix="metorigin-overhead-")).absolute()
    work.mkdir(parents=True, exist_ok=True)
    cohort, platform, floor = args.cohort or work / "cohort", work / "platform", work / "floor"
    for store in (platform, floor):
        shutil.rmtree(store, ignore_errors=True)
    if args.cohort is None:
        shutil.rmtree(cohort, ignore_errors=True)
        _, synth_s, _ = timed_command(
            [str(BIN / "metorigin"), "synth", "--out", str(cohort), "--scale", str(args.scale)]
            + ["--matrix", str(args.matrix), "--seed", str(args.seed), "--workers", str(args.workers)],
            work / "synth.log",
        )
        synth = f"metorigin synth --scale {args.scale:g} --matrix {args.matrix} --seed {args.seed}"
        if args.smoke:
            keep_patients(cohort, SMOKE_PATIENTS)
            synth += f", its first {SMOKE_PATIENTS} patients"
        print(f"cohort: {synth}: {synth_s:.0f} s")
    cohort = cohort.absolute()

    pool = spinners()
    scaling = [machine_scaling(pool, repeats)]
    run = [str(BIN / "metorigin"), "run", "--cohort", str(cohort), "--store", str(platform), "--select", SELECTION]
    run += ["--workers", str(args.workers), "--scans-at-once", str(args.workers)]
    fresh_at, platform_s, fresh_lines = timed_command(run, work / "platform-run.log")
    rerun_at, rerun_s, rerun_lines = timed_command(run, work / "platform-rerun.log")
    scaling.append(machine_scaling(pool, repeats))
    _, floor_s, floor_lines = timed_command(
        [sys.executable, str(Path(__file__).resolve()), "--floor", str(cohort), str(floor), str(args.workers)],
        work / "floor.log",
    )
    scaling.append(machine_scaling(pool, repeats))
    pool.shutdown()
    floor_phases = json.loads(floor_lines[-1][1])
    n_tables, n_partitions, n_files = compare_stores(platform, floor)
    n_scans = floor_phases["n_scans"]
    print(
        f"{n_scans} included scans, {args.workers} processes; the stores are equal: {n_tables} lake tables "
        f"({n_partitions} Parquet files) and {n_files} artefacts; ignored columns: "
        + ", ".join(f"{t}.{c}" for t, cs in IGNORED.items() for c in cs)
    )

    home = platform / ".dagster"
    fresh = run_events(home, fresh_at, rerun_at)
    rerun = run_events(home, rerun_at, time.time())
    report_platform(fresh, fresh_at, platform_s, fresh_lines, args.workers)
    per_scan_read, sampled = reading_the_scan(platform, 5 if args.smoke else 10)
    print(
        f"  reading the scan: its row of the stored scans table {per_scan_read * 1000:.0f} ms a scan (timed here "
        f"on {sampled} scans), ~{per_scan_read * n_scans:.1f} s of the steps' compute; its files are hashed and "
        "decoded once, by scan_integrity, as the floor does"
    )
    report_rerun(rerun, rerun_at, rerun_s, rerun_lines)
    summed = floor_phases["summed"]
    print(
        f"floor: {floor_s:.1f} s wall: start and imports {floor_phases['start_s']:.1f} s, cohort tables "
        f"{floor_phases['cohort_s']:.1f} s, waiting for the workers {floor_phases['workers_wait_s']:.1f} s, "
        f"scans {floor_phases['scans_s']:.1f} s; summed over scans {sum(summed.values()):.1f} s: "
        + ", ".join(f"{k} {v:.1f}" for k, v in summed.items())
    )
    counted = min(scaling) >= MIN_SCALING
    print(
        f"machine: two processes of pure CPU work scale {statistics.median(scaling):.2f} against one after the "
        f"other (before, between and after the runs: {', '.join(f'{v:.2f}' for v in scaling)}, each the median of "
        f"{repeats}): the ratio {'counts' if counted else 'does NOT count'} (it counts where each is >= {MIN_SCALING})"
    )
    print(f"unchanged re-run: {rerun_s:.1f} s (target <= {TARGET_RERUN_S:g} s)")
    print(f"platform_vs_floor={platform_s / floor_s:.2f} platform_s={platform_s:.1f} floor_s={floor_s:.1f}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


def report_platform(runs: list[tuple], started: float, seconds: float, lines: list[tuple[float, str]], workers: int):
    """The fresh run's phases: wall-clock ones, then the per-scan runs' summed over the runs."""
    ingest = [r for r in runs if r[0] == "ingest_cohort"]
    scans = [r for r in runs if r[0] == "process_scan"]
    first_step = min(at for r in runs for at, kind, _ in r[5] if kind == "STEP_START")
    study_line = first_line(lines, lambda t: t.startswith("study:"))
    summary_line = first_line(lines, lambda t: " run(s): " in t)
    command = f"metorigin run --select '{SELECTION}' --workers {workers} --scans-at-once {workers}"
    print(f"platform, fresh store: {seconds:.1f} s ({command})")
    print(
        f"  run start: {first_step - started:.1f} s from the process's start to its first step: "
        f"{study_line - started:.1f} s to its 'study:' line (python, imports, definitions, study checks, lease), "
        "then the ingest run's creation, planning and resources"
    )
    if ingest:
        _, _, created, _, ended, logs = ingest[0]
        steps = step_phases(logs)
        print(
            f"  ingest run: {ended - created:.1f} s, its steps {sum(s['total'] for s in steps.values()):.1f} s ("
            + ", ".join(f"{k} {v['total']:.2f}" for k, v in steps.items())
            + ")"
        )
    if not scans:
        return
    first, last = min(r[2] for r in scans), max(r[4] for r in scans)
    alone = len(scans) < 10  # scan_runs.POOL_MIN_SCANS: fewer run one at a time in the CLI's process
    print(
        f"  ingest end to the first per-scan run: {first - (ingest[0][4] if ingest else started):.1f} s (the scans "
        + (
            "to process, one at a time in this process: fewer than 10)"
            if alone
            else "to process, scan workers started)"
        )
    )
    phases = platform_phases(runs)
    print(
        f"  per-scan runs: {phases['runs']} in {last - first:.1f} s wall; summed over the runs "
        f"{phases['run_total']:.1f} s (up to {1 if alone else workers} at a time), of which"
    )
    print(f"    before each run's first step (created, planned, resources): {phases['before_first_step']:.1f} s")
    print(f"    between steps: {phases['between_steps']:.1f} s; after the last step: {phases['after_last_step']:.1f} s")
    print("    steps, s: total = inputs loaded | compute (with reading the scan) | lake write | its event | checks")
    totals: dict[str, float] = {}
    for step in PER_SCAN_STEPS:
        p = phases["steps"].get(step)
        if p:
            for k, v in p.items():
                totals[k] = totals.get(k, 0.0) + v
            print(f"      {step:<20}" + step_columns(p))
    print(f"      {'all steps':<20}" + step_columns(totals))
    per_event = statistics.median(phases["gaps"]) if phases["gaps"] else float("nan")
    n_events = phases["events"] + phases["logs"]
    print(
        f"  events: {phases['events']} Dagster events and {phases['logs']} log records in the per-scan runs "
        f"({n_events / phases['runs']:.0f} a scan), {per_event * 1000:.0f} ms apart where nothing else happens "
        f"between two (median): ~{per_event * n_events:.1f} s of the summed run time (an estimate, spread over "
        "every phase above)"
    )
    if summary_line:
        print(
            f"  after the last per-scan run: {summary_line - last:.1f} s to the summary, "
            f"{started + seconds - summary_line:.1f} s from it to the process's exit"
        )


def step_columns(p: dict[str, float]) -> str:
    return (
        f"{p['total']:7.1f} = {p['inputs']:5.1f} | {p['compute']:6.1f} | {p['lake']:5.1f} | {p['event']:5.1f} "
        f"| {p['checks']:5.1f}"
    )


def report_rerun(runs: list[tuple], started: float, seconds: float, lines: list[tuple[float, str]]):
    """The unchanged re-run: its start, the ingest run, the scans' staleness, the summary, the exit."""
    ingest = [r for r in runs if r[0] == "ingest_cohort"]
    others = [r for r in runs if r[0] != "ingest_cohort"]
    skipped = first_line(lines, lambda t: "unchanged: skipped" in t)
    summary_line = first_line(lines, lambda t: " run(s): " in t)
    parts = [f"{len(runs)} run(s)"]
    if ingest:
        _, _, created, _, ended, _ = ingest[0]
        parts += [f"run start {created - started:.1f} s", f"ingest run {ended - created:.1f} s"]
        if skipped:
            parts.append(f"staleness of the scans {skipped - ended:.1f} s")
    if others:
        parts.append(f"{len(others)} other run(s) {sum(r[4] - r[2] for r in others):.1f} s")
    if summary_line:
        parts.append(f"summary {summary_line - (skipped or summary_line):.1f} s")
        parts.append(f"exit {started + seconds - summary_line:.1f} s")
    print(f"platform, unchanged re-run: {seconds:.1f} s: " + ", ".join(parts))


if __name__ == "__main__":
    main()
