"""Per-scan steps on a Dask cluster, through dagster-dask's executor.

Each step of a `process_scan` run is a Dask task (dagster-dask submits it with the Dask worker
resources its op's `dagster-dask/resource_requirements` tag names): steps that want a GPU need
`GPU`, the others `CPU`, so that a CPU step never takes a GPU worker's slot. metorigin always hands
dagster-dask an existing scheduler: a local cluster or Slurm jobs are started once per `metorigin
run` (`open_cluster`), not once per run as dagster-dask's own `local`/`slurm` would.

A Dask worker loads the definitions itself, from the environment (`metorigin.definitions`),
and opens the Dagster instance from the run's instance reference: the store and the instance
must be where every worker sees them (a shared file system; a multi-node cluster needs the
instance's storage on PostgreSQL: docs/cluster.md).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Mapping

import dagster as dg
from dagster_dask.executor import get_dask_resource_requirements, query_on_dask_worker
from dask import config as dask_config
from distributed import as_completed
from distributed.diagnostics.plugin import WorkerPlugin

from metorigin.core.config import RunConfig, activate, for_code_location, worker_config
from metorigin.core.errors import ClusterError
from metorigin.core.study import ClusterSettings, SlurmSettings
from metorigin.runtime.dagster_internals import RetryMode, iterate_with_context, raise_execution_interrupts
from metorigin.runtime.execution import forget_loaded_definitions

CONNECT_TIMEOUT_S = 10
# Worker processes that may start children (a step's per-lesion pool): Dask daemonises them by
# default, and a daemonic process may not (radiomics.py then extracts in the worker itself).
NOT_DAEMONIC_ENV = "DASK_DISTRIBUTED__WORKER__DAEMON"


def worker_resources(gpu: bool, gpu_steps_on_cpu: bool) -> dict[str, int]:
    """The Dask resources a worker metorigin starts offers: a GPU worker only `GPU` (CPU steps stay
    off it), a CPU worker `CPU`, and `GPU` too where GPU steps may run on CPU."""
    return {"GPU": 1} if gpu else {"CPU": 1, **({"GPU": 1} if gpu_steps_on_cpu else {})}


def _resource_text(resources: Mapping[str, int]) -> str:
    return " ".join(f"{name}={count}" for name, count in resources.items())


def _use_config(text: str) -> None:
    """This worker's configuration (core/config.py); forgets the definitions it loaded for another."""
    config = worker_config(text)
    if config == for_code_location():
        return
    activate(config)
    forget_loaded_definitions()


class _Configuration(WorkerPlugin):
    """A Dask worker plugin: every worker, also one that joins later (a Slurm job that starts late),
    builds its definitions from this run's configuration (cohort, store, study)."""

    name = "metorigin-configuration"

    def __init__(self, config: RunConfig):
        self.config = config.to_json()

    def setup(self, worker) -> None:
        _use_config(self.config)


def _store_problem(root: str) -> str | None:
    if not os.path.isdir(root):
        return "does not see the store root"
    if not os.access(root, os.W_OK):
        return "cannot write the store root"
    return None


def _no_workers_timeout(seconds: float, dask_scheduler=None) -> None:
    dask_scheduler.no_workers_timeout = seconds


def connect(address: str):
    """A client of the scheduler at `address`, or a ClusterError saying how to start one."""
    from distributed import Client

    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S)
    except OSError as exc:
        raise ClusterError(
            f"no Dask scheduler answers at {address} ({exc}). Fix: start one (`dask scheduler`) and its workers "
            "(`dask worker ADDRESS --resources CPU=1`), or run without --dask-address (a local cluster)"
        ) from None


def share_config(client, config: RunConfig, timeout_s: float) -> None:
    """Every worker (one that joins later too) gets this process's run configuration, what the
    definitions are built from (the cohort, the store, the study); a task whose resource no worker
    offers fails after `timeout_s` (the scheduler's no-workers timeout)."""
    client.register_plugin(_Configuration(config))
    client.run_on_scheduler(_no_workers_timeout, float(timeout_s))


def prepare_workers(address: str, config: RunConfig, timeout_s: float, needed: set[str] = frozenset({"CPU"})) -> None:
    """Before any run (`metorigin run`): the configuration shared, some worker offering each
    resource in `needed` (waiting up to `timeout_s` for workers to join), and every worker able to
    see and write the store root."""
    with connect(address) as client:
        share_config(client, config, timeout_s)
        store_root = config.store
        require_resources(client, address, needed, timeout_s, "the per-scan steps")
        blind = {worker: problem for worker, problem in client.run(_store_problem, store_root).items() if problem}
        if blind:
            listed = "; ".join(f"{worker} {problem}" for worker, problem in sorted(blind.items()))
            raise ClusterError(
                f"{listed} ({store_root}). Fix: put the store on a file system every worker mounts at the same path "
                "(docs/cluster.md)"
            )


def require_resources(client, address: str, needed: set[str], timeout_s: float, who: str) -> None:
    """Waits up to `timeout_s` for workers offering every resource in `needed` (Slurm jobs start
    late), then refuses naming the missing ones, what the workers offer, and the fix."""
    deadline = time.monotonic() + timeout_s
    while True:
        workers = client.scheduler_info()["workers"].values()
        missing = sorted(r for r in needed if not any(w.get("resources", {}).get(r) for w in workers))
        if not missing:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(1)
    offered = sorted({r for w in workers for r in w.get("resources", {})})
    raise ClusterError(
        f"no worker of the Dask cluster at {address} offers the resource {', '.join(missing)} that {who} need "
        f"(waited {timeout_s:.0f} s; the workers offer: {', '.join(offered) or 'nothing'}). Fix: start a worker with "
        f"`--resources {' '.join(f'{r}=1' for r in missing)}`, or, for GPU steps on a cluster without GPUs, set "
        "`cluster: {gpu_steps_on_cpu: true}` in the study file"
    )


def steps_resources(execution_plan) -> set[str]:
    """The Dask resources the plan's steps need."""
    steps = [step for level in execution_plan.get_steps_to_execute_by_level() for step in level]
    return {name for step in steps for name in get_dask_resource_requirements(step.tags)}


class _Sealed:
    """A task's arguments that Dask must not look into. Dask's task spec walks every tuple for
    futures, and Dagster's run, job and execution state are NamedTuples holding records that refuse
    iteration: dagster-dask 0.29.27's own submit fails so on dask 2026.8."""

    def __init__(self, arguments: tuple):
        self.arguments = arguments


def _run_step(dependencies: list, sealed: _Sealed):
    """On a worker: one step, as dagster-dask runs it (dependencies: only to order the tasks)."""
    return query_on_dask_worker(dependencies, *sealed.arguments)


class DaskStepExecutor(dg.Executor):
    """Each step of a run as a Dask task on the scheduler at `address`, where a worker offers the
    resources its op's tag asks for (dagster-dask's tag and worker function).

    Beside dagster-dask's own executor: it refuses a run at its start when no worker offers a
    resource a step needs (after `timeout_s`, naming it); tasks are keyed by run, so concurrent runs
    of one job (two scans at once) never share a Dask key (dagster-dask keys them by job and step
    only: the second run would get the first one's results); and the arguments reach the worker
    sealed (`_Sealed`)."""

    def __init__(self, config: RunConfig, address: str, timeout_s: float, elsewhere: dg.Executor):
        self.config, self.address, self.timeout_s = config, address, timeout_s
        self.elsewhere = elsewhere  # runs of whole-store assets (the UI's): in their process, as the named jobs

    @staticmethod
    def per_scan(run: dg.DagsterRun) -> bool:
        return "dagster/partition" in run.tags

    @property
    def retries(self) -> RetryMode:
        return RetryMode.DISABLED

    def execute(self, plan_context, execution_plan):
        if not self.per_scan(plan_context.dagster_run):
            yield from self.elsewhere.execute(plan_context, execution_plan)
            return
        if not plan_context.instance.is_persistent:
            raise ClusterError("steps on a Dask cluster need a persistent Dagster instance (the store's)")
        steps = ", ".join(sorted(step.key for step in execution_plan.steps))
        run = plan_context.dagster_run
        with connect(self.address) as client:
            share_config(client, self.config, self.timeout_s)  # a run the daemon or the UI launched has its own
            require_resources(client, self.address, steps_resources(execution_plan), self.timeout_s, steps)
            futures = {}
            for level in execution_plan.get_steps_to_execute_by_level():
                for step in level:
                    arguments = (
                        plan_context.reconstructable_job,
                        run,
                        plan_context.run_config,
                        [step.key],
                        plan_context.instance.get_ref(),
                        execution_plan.known_state,
                    )
                    dependencies = [futures[key] for put in step.step_inputs for key in put.dependency_keys]
                    futures[step.key] = client.submit(
                        _run_step,
                        dependencies,
                        _Sealed(arguments),
                        key=f"{run.job_name}.{run.run_id}.{step.key}",
                        resources=get_dask_resource_requirements(step.tags),
                        pure=False,
                    )
            finished = as_completed(list(futures.values()), with_results=True)
            for _, events in iterate_with_context(raise_execution_interrupts, finished):
                yield from events


def slurm_jobs(settings: SlurmSettings, gpu_steps_on_cpu: bool) -> list[tuple[str, int, dict]]:
    """The Slurm worker jobs as dask-jobqueue's `SLURMJob` options: (kind, count, options) for the
    CPU jobs and the GPU jobs. Each job books `cores` CPUs and runs one Dask worker process with
    one thread (Dagster steps are not thread-safe); a step's own pools (radiomics, DenseNet
    loaders) use the job's cores (METORIGIN_WORKERS)."""
    common = {
        "cores": 1,  # Dask threads
        "processes": 1,
        "job_cpu": settings.cores,
        "memory": settings.memory,
        "walltime": settings.walltime,
        "account": settings.account or None,
        "python": settings.python or sys.executable,
        "job_script_prologue": [f"export METORIGIN_WORKERS={settings.cores}", f"export {NOT_DAEMONIC_ENV}=False"],
    }

    def job(gpu: bool, partition: str) -> dict:
        resources = worker_resources(gpu, gpu_steps_on_cpu)
        return {
            **common,
            "queue": partition or None,
            "job_name": "metorigin-gpu" if gpu else "metorigin-cpu",
            "job_extra_directives": [*settings.directives, *([f"--gres=gpu:{settings.gpus}"] if gpu else [])],
            "worker_extra_args": ["--resources", _resource_text(resources)],
        }

    return [
        ("cpu", settings.jobs, job(False, settings.partition)),
        ("gpu", settings.gpu_jobs, job(True, settings.gpu_partition or settings.partition)),
    ]


def slurm_job_scripts(settings: SlurmSettings, gpu_steps_on_cpu: bool, scheduler: str) -> dict[str, str]:
    """The sbatch scripts dask-jobqueue submits for the CPU and GPU worker jobs (no cluster needed);
    each worker is named after its Slurm job."""
    from dask_jobqueue.slurm import SLURMJob

    return {
        kind: SLURMJob(scheduler=scheduler, name=f"metorigin-{kind}-$SLURM_JOB_ID", **options).job_script()
        for kind, _, options in slurm_jobs(settings, gpu_steps_on_cpu)
    }


@contextlib.contextmanager
def open_cluster(settings: ClusterSettings, address: str = "") -> Iterator[str]:
    """The scheduler address the per-scan runs use, for as long as the block: `address` (or the
    study's `cluster.address`) as it is, else a cluster started here and stopped after: Slurm
    worker jobs (`cluster.slurm`) or `cluster.local_workers` local worker processes."""
    address = address or settings.address
    if address:
        yield address
        return
    if settings.slurm is not None:
        from dask_jobqueue import SLURMCluster
        from dask_jobqueue.slurm import SLURMJob

        (_, cpu_jobs, cpu), (_, gpu_jobs, gpu) = slurm_jobs(settings.slurm, settings.gpu_steps_on_cpu)
        with SLURMCluster(**cpu) as cluster:
            cluster.scale(jobs=cpu_jobs)
            # The GPU jobs join the same scheduler: dask-jobqueue's cluster holds one job template.
            gpu_workers = [
                SLURMJob(scheduler=cluster.scheduler_address, name=f"metorigin-gpu-{i}", **gpu) for i in range(gpu_jobs)
            ]
            for worker in gpu_workers:
                cluster.sync(worker.start)
            try:
                yield cluster.scheduler_address
            finally:
                for worker in gpu_workers:
                    cluster.sync(worker.close)
        return
    from distributed import LocalCluster

    resources = worker_resources(False, True)  # one machine: its GPU steps run where its CPU steps do
    with (
        dask_config.set({"distributed.worker.daemon": False}),
        LocalCluster(
            n_workers=settings.local_workers,
            threads_per_worker=1,
            processes=True,
            resources=resources,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
    ):
        yield cluster.scheduler_address
