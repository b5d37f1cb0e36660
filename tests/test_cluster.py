"""The per-scan steps on a real Dask cluster: a scheduler and two workers started here as processes
on 127.0.0.1 (`dask scheduler`, `dask worker`), one worker offering `GPU`, the other `CPU`; and the
Slurm job scripts dask-jobqueue would submit (no Slurm here: the scripts are compared as text)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from metorigin.core.config import RunConfig
from metorigin.core.errors import ClusterError
from metorigin.core.package import EXAMPLES_DIR
from metorigin.core.store import Store
from metorigin.core.study import SlurmSettings
from metorigin.runtime.cluster import prepare_workers, slurm_job_scripts
from metorigin.runtime.placement import DASK_RESOURCES_TAG
from tests.test_cli import _cli

DASK = Path(sys.executable).with_name("dask")
REPOSITORY = Path(__file__).resolve().parents[1]
PER_SCAN = ("scan_integrity", "segmentations", "lesions", "radiomics_features", "lesion_slices", "scan_predictions")
GPU_STEPS = {"scan_predictions"}  # and scan_imaging where nnU-Net segments: these scans have their masks
SCANS = "group:cohort or group:imaging"  # ingest and the per-scan assets: no feature store, no study
WHEN = {"scan_integrity": ["checked_at"]}  # when a scan was checked: the only column that may differ


class Cluster:
    """A scheduler and its workers, each a process of its own; `stop` ends every one of them."""

    def __init__(self, folder: Path):
        self.folder, self.processes, self.address = folder, {}, None

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("METORIGIN_", "DAGSTER_HOME"))}
        process = subprocess.Popen(
            [str(DASK), *args], stdout=log, stderr=subprocess.STDOUT, cwd=REPOSITORY, env=environment
        )
        self.processes[name] = process
        return process

    def start_scheduler(self) -> None:
        scheduler_file = self.folder / "scheduler.json"
        self._start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                    "--scheduler-file", str(scheduler_file))  # fmt: skip
        self.address = json.loads(_wait_for(scheduler_file.read_text, 60))["address"]

    def start_worker(self, name: str, resources: str) -> int:
        """A worker without a nanny: its process runs the steps, so the event log's pids name it."""
        process = self._start(name, "worker", self.address, "--name", name, "--nthreads", "1", "--no-nanny",
                              "--no-dashboard", "--resources", resources)  # fmt: skip
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            _wait_for(lambda: any(w["name"] == name for w in client.scheduler_info()["workers"].values()), 60)
        return process.pid

    def stop(self) -> None:
        """Workers first, then the scheduler: a worker whose scheduler went first waits ~20 s for it
        before it exits."""
        for process in reversed(self.processes.values()):
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for(probe, seconds: float):
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = probe()
            if value:
                return value
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {seconds} s")
        time.sleep(0.2)


@pytest.fixture
def cluster(tmp_path):
    started = Cluster(tmp_path)
    try:
        started.start_scheduler()
        yield started
    finally:
        started.stop()


def _contents(store: Path, asset: str) -> pd.DataFrame:
    frame = Store(store).read_lake(asset).drop(columns=WHEN.get(asset, []))
    return frame.sort_values(list(frame.columns[:2])).reset_index(drop=True)


def _step_pids(store: Path) -> dict[str, set[int]]:
    """Per step, the processes that started it (Dagster's event log records each event's pid)."""
    pids: dict[str, set[int]] = {}
    with dg.DagsterInstance.from_config(str(store / ".dagster")) as instance:
        for run in instance.get_runs(dg.RunsFilter(job_name="process_scan")):
            for record in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_START).records:
                entry = record.event_log_entry
                pids.setdefault(entry.step_key, set()).add(entry.dagster_event.pid)
    return pids


@pytest.mark.slow
def test_per_scan_steps_on_a_dask_cluster_match_an_in_process_run_and_survive_a_lost_worker(cohort, tmp_path, cluster):
    scans_csv = cohort / "scans.csv"  # 5 scans (one a DICOM series): the rest add time, not cases
    scans_csv.write_text("\n".join(scans_csv.read_text().splitlines()[:6]) + "\n")
    study = tmp_path / "study.yaml"  # the built-in quick study (same hash); a step waits 3 s for a worker
    study.write_text("base: quick\ncluster:\n  resource_timeout_s: 3\n")
    here = tmp_path / "in_process"
    reference = subprocess.Popen(
        [str(Path(sys.executable).with_name("metorigin")), "run", "--cohort", cohort, "--store", here, "--study", study,
         "--select", SCANS, "--executor", "in_process"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    cpu = cluster.start_worker("cpu", "CPU=1")
    gpu = cluster.start_worker("gpu", "GPU=1")
    there = tmp_path / "dask"
    run = ("run", "--cohort", cohort, "--store", there, "--study", study, "--select", SCANS,
           "--dask-address", cluster.address, "--scans-at-once", "2")  # fmt: skip

    # The CPU worker dies once the first scan is done: the scans it held fail (their CPU steps wait
    # for a CPU worker, then fail naming the resource); the done ones keep their results.
    running = subprocess.Popen(
        [str(Path(sys.executable).with_name("metorigin")), *map(str, run)], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, encoding="utf-8",
        env={k: v for k, v in os.environ.items() if not k.startswith(("METORIGIN_", "DAGSTER_HOME"))},
    )  # fmt: skip
    _wait_for(lambda: Store(there).lake_partitions("scan_predictions"), 300)
    os.kill(cpu, signal.SIGKILL)
    output, _ = running.communicate(timeout=300)
    assert running.returncode == 1, output[-3000:]
    assert "CPU" in output and "FAILED" in output, output[-3000:]
    assert reference.wait(timeout=300) == 0
    done = Store(there).lake_partitions("scan_predictions")
    assert 0 < len(done) < len(Store(here).lake_partitions("scan_predictions"))
    for asset in PER_SCAN:
        ours = _contents(there, asset)
        theirs = _contents(here, asset)
        pd.testing.assert_frame_equal(ours, theirs[theirs["scan_id"].isin(set(ours["scan_id"]))].reset_index(drop=True))

    # With the GPU worker alone, a run needing a CPU worker is refused naming the resource, and a store
    # root the workers cannot see is refused (one cluster for the whole test: each start costs seconds).
    with pytest.raises(ClusterError, match="offers the resource CPU .*the workers offer: GPU"):
        prepare_workers(cluster.address, RunConfig(store=str(there)), timeout_s=1, needed={"CPU", "GPU"})
    with pytest.raises(ClusterError, match="does not see the store root"):
        prepare_workers(cluster.address, RunConfig(store=str(tmp_path / "not-mounted")), timeout_s=1, needed={"GPU"})

    # A new CPU worker, and the same command again: the rest of the scans, equal to the in-process run.
    cpu_again = cluster.start_worker("cpu-again", "CPU=1")
    again = _cli(*run)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    for asset in PER_SCAN:
        pd.testing.assert_frame_equal(_contents(there, asset), _contents(here, asset), obj=asset)

    # Steps tagged for a GPU ran on the GPU worker, the others on a CPU worker, never on the GPU one.
    pids = _step_pids(there)
    assert set(pids) == {"scan_imaging", "scan_predictions"}  # a scan's run: two steps
    for step, ran_in in pids.items():
        assert ran_in == {gpu} if step in GPU_STEPS else ran_in <= {cpu, cpu_again}, (step, ran_in)


def test_the_resource_tag_is_dagster_dasks():
    from dagster_dask.executor import DASK_RESOURCE_REQUIREMENTS_KEY

    assert DASK_RESOURCES_TAG == DASK_RESOURCE_REQUIREMENTS_KEY


def test_the_slurm_block_gives_the_job_scripts_dask_jobqueue_submits():
    slurm = SlurmSettings(
        partition="cpu",
        gpu_partition="gpu",
        account="radiology",
        cores=8,
        memory="32GB",
        walltime="04:00:00",
        jobs=4,
        gpu_jobs=1,
        gpus=1,
        python="/shared/metorigin/.venv/bin/python",
        directives=("--qos=normal",),
    )
    scripts = slurm_job_scripts(slurm, gpu_steps_on_cpu=False, scheduler="tcp://10.1.2.3:8786")
    header = (
        "#!/usr/bin/env bash\n\n#SBATCH -J metorigin-{kind}\n#SBATCH -p {kind}\n#SBATCH -A radiology\n#SBATCH -n 1\n"
    )
    resources = {"cpu": "CPU=1", "gpu": "GPU=1"}
    for kind in ("cpu", "gpu"):
        expected = (
            header.format(kind=kind)
            + "#SBATCH --cpus-per-task=8\n#SBATCH --mem=30G\n#SBATCH -t 04:00:00\n#SBATCH --qos=normal\n"
            + ("#SBATCH --gres=gpu:1\n" if kind == "gpu" else "")
            + "export METORIGIN_WORKERS=8\nexport DASK_DISTRIBUTED__WORKER__DAEMON=False\n"
            + "/shared/metorigin/.venv/bin/python -m distributed.cli.dask_worker tcp://10.1.2.3:8786 "
            + f"--name metorigin-{kind}-$SLURM_JOB_ID --nthreads 1 --memory-limit 29.80GiB --nanny --death-timeout 60 "
            + f"--resources {resources[kind]}\n"
        )
        assert scripts[kind] == expected, scripts[kind]
    # Without GPUs, the CPU workers take the GPU steps too (by configuration).
    assert "--resources CPU=1 GPU=1" in slurm_job_scripts(slurm, True, "tcp://10.1.2.3:8786")["cpu"]


def test_the_cluster_block_changes_where_not_what(tmp_path):
    from metorigin.core.errors import StudyFileError
    from metorigin.core.study import get_settings
    from metorigin.core.study_file import load_study

    example = load_study(EXAMPLES_DIR / "cluster" / "slurm.yaml")
    assert example.cluster.executor == "dask" and example.cluster.slurm.gpu_jobs == 2
    assert example.study_hash() == get_settings("paper").study_hash()  # in no settings hash
    assert set(slurm_job_scripts(example.cluster.slurm, False, "tcp://login1:8786")) == {"cpu", "gpu"}
    wrong = tmp_path / "study.yaml"
    wrong.write_text("base: quick\ncluster: {executor: spark}\n")
    with pytest.raises(StudyFileError, match="cluster.executor"):
        load_study(wrong)


def test_a_scan_step_asks_a_cluster_for_a_gpu_only_where_nnunet_segments():
    """A scan's imaging assets are one step: it takes a GPU worker's slot when nnU-Net segments, a CPU
    worker's when the cohort's masks are read; the predictions always want the GPU (the DenseNet)."""
    from metorigin.core.study import get_settings, with_run_choices
    from metorigin.defs.imaging.assets import scan_imaging_assets
    from metorigin.defs.imaging.predictions import scan_predictions
    from metorigin.runtime.placement import CPU_STEP, GPU_STEP

    quick = get_settings("quick")
    assert scan_imaging_assets(quick).op.tags == CPU_STEP
    assert scan_imaging_assets(with_run_choices(quick, nnunet_model_dir="/models/liver")).op.tags == GPU_STEP
    assert scan_predictions.op.tags == GPU_STEP
