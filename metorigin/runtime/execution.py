"""Running a named job in this process and telling the user what happened: `metorigin run` does it
for every phase, and a `process_scans` run (scan_batches.py) for each scan of its batch."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, Protocol

import dagster as dg

from metorigin.defs.common.metadata import N_RETIRED, NOTICE
from metorigin.defs.common.run_owner import owner_tags
from metorigin.runtime.dagster_internals import ReconstructableJob, ReconstructableRepository
from metorigin.runtime.dead_runs import wait_for_slot


class ExecutionResult(Protocol):
    """What a run's result offers (`execute_in_process`'s and `execute_job`'s alike; their common
    base class is private)."""

    run_id: str
    success: bool

    def get_asset_materialization_events(self) -> list[dg.DagsterEvent]: ...
    def get_step_failure_events(self) -> list[dg.DagsterEvent]: ...
    def get_asset_check_evaluations(self) -> list[dg.AssetCheckEvaluation]: ...
    def filter_events(self, event_filter: Callable[[dg.DagsterEvent], bool]) -> list[dg.DagsterEvent]: ...


@dataclass
class RunReport:
    """What a user needs to know after a run: did it work, and if not, what exactly to fix."""

    run_ids: list[str] = field(default_factory=list)
    success: bool = True
    materialized: dict[str, int] = field(default_factory=dict)  # asset -> partitions (or 1) materialised
    step_failures: list[str] = field(default_factory=list)
    failed_checks: list[tuple[str, str]] = field(default_factory=list)  # (check, problems)
    blocked_by: list[str] = field(default_factory=list)  # failed blocking checks that stopped the pipeline
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (check, messages) of failed WARN checks
    notices: list[str] = field(default_factory=list)  # what assets asked to tell (NOTICE metadata)
    checks_passed: int = 0
    scans_processed: int = 0  # per-scan runs that succeeded
    retired: int = 0  # scans whose results ingest retired (they left the cohort)
    skipped: dict[str, int] = field(default_factory=dict)  # group -> assets (or scans) found fresh

    @property
    def ok(self) -> bool:
        return self.success and not self.failed_checks

    def merge(self, other: "RunReport") -> None:
        """Adds what another process's runs reported (a scan run in a worker process)."""
        self.success &= other.success
        for name in ("run_ids", "step_failures", "failed_checks", "blocked_by", "warnings", "notices"):
            getattr(self, name).extend(getattr(other, name))
        for name in ("checks_passed", "scans_processed", "retired"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("materialized", "skipped"):
            counts = getattr(self, name)
            for key, count in getattr(other, name).items():
                counts[key] = counts.get(key, 0) + count

    def add(self, result: ExecutionResult, partition: str | None = None) -> None:
        self.run_ids.append(result.run_id)
        self.success &= result.success
        for event in result.get_asset_materialization_events():
            key = event.asset_key.to_user_string()
            self.materialized[key] = self.materialized.get(key, 0) + 1
            metadata = event.step_materialization_data.materialization.metadata
            if metadata.get(NOTICE):
                self.notices += metadata[NOTICE].value.splitlines()
            if metadata.get(N_RETIRED):
                self.retired += metadata[N_RETIRED].value
        where = f"[{partition}] " if partition else ""
        failures = result.get_step_failure_events()
        for event in failures:
            error = event.step_failure_data.error
            if error.cls_name != "DagsterAssetCheckFailedError":  # reported below, as the check it is
                self.step_failures.append(f"{where}{event.step_key}: {_error_text(error)}")
        if not result.success and not failures:  # the run failed outside its steps: in its executor
            ended = result.filter_events(lambda event: event.event_type == dg.DagsterEventType.RUN_FAILURE)
            error = ended[0].event_specific_data.error if ended and ended[0].event_specific_data else None
            self.step_failures.append(f"{where}run: {_error_text(error)}")
        for evaluation in result.get_asset_check_evaluations():
            self.checks_passed += evaluation.passed
            if evaluation.passed:
                continue
            name = f"{where}{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            messages = evaluation.metadata.get("messages")
            text = messages.value if messages else evaluation.description or ""
            if evaluation.severity == dg.AssetCheckSeverity.WARN:
                self.warnings.append((name, text))
                continue
            self.failed_checks.append((name, text))
            if evaluation.blocking:
                self.blocked_by.append(name)


Execute = Callable[..., ExecutionResult]


def reconstructable_job(name: str) -> ReconstructableJob:
    """A job as a run process loads it, from the code location (definitions.py, in this process's
    environment): what an executor that runs steps elsewhere (a Dask worker) sends there to load."""
    return ReconstructableRepository.for_module("metorigin.definitions", "defs").get_reconstructable_job(name)


def forget_loaded_definitions() -> None:
    """Dagster memoises, for the whole process, the definitions the last `ReconstructableJob` loaded
    (`lru_cache` keyed by the code pointer, which is the same for every store). Ours are built from
    the environment, so a process whose environment changes to another store (a Dask worker, a
    test) must drop that memo, or it runs the other store's definitions. (Private API.)"""
    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()


def executor(
    job_def: Callable[[str], dg.JobDefinition],
    instance: dg.DagsterInstance,
    report: RunReport,
    log_level: str = "INFO",
    tags: Mapping[str, str] | None = None,
    steps_elsewhere: bool = False,
    tell: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> Execute:
    """`execute(job_name, assets, partition=None, tags=None, ops=None)`: one run of the named job,
    coordinated in this process, on `instance`, its outcome added to `report`; a failure is
    reported, never raised. Its steps run in this process, or (`steps_elsewhere`) where the job's
    executor sends them (a Dask cluster). `ops`: op name -> its config (a promotion, the store an
    external validation reads). Before a job with a step in a pool (the dbt steps), it waits for
    the pool's slot here, saying who holds it (`tell`), rather than silently inside Dagster."""
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}

    def execute(job_name: str, selected: set, partition: str | None = None, run_tags=None, ops=None):
        config = {**run_config, "ops": {name: {"config": value} for name, value in ops.items()}} if ops else run_config
        run_tags = {**(tags or {}), **(run_tags or {}), **owner_tags()}  # this process (dead_runs.py)
        for pool in {node.definition.pool for node in job_def(job_name).graph.nodes} - {None}:
            wait_for_slot(instance, tell, pool)
        assets = sorted(selected, key=str)
        if steps_elsewhere:
            partition_tag = {"dagster/partition": partition} if partition else {}
            with dg.execute_job(
                reconstructable_job(job_name), instance, config, {**run_tags, **partition_tag}, asset_selection=assets
            ) as result:
                report.add(result, partition)
            return result
        result = job_def(job_name).execute_in_process(
            run_config=config,
            instance=instance,
            partition_key=partition,
            asset_selection=assets,
            raise_on_error=False,
            tags=run_tags,
        )
        report.add(result, partition)
        return result

    return execute


def _error_text(error) -> str:
    """The error and its causes, one line each: Dagster wraps the message a user needs in its own."""
    parts = []
    while error is not None:
        parts.append(error.message.strip().rstrip(":"))
        error = error.cause
    return " <- ".join(parts) or "failed"
