"""Running a named job in this process and telling the user what happened: `metorigin run` does it
for every phase, and a `process_scans` run (scan_batches.py) for each scan of its batch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

import dagster as dg

from .metadata import N_RETIRED, NOTICE


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

    def add(self, result: dg.ExecuteInProcessResult, partition: str | None = None) -> None:
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
        for event in result.get_step_failure_events():
            error = event.step_failure_data.error
            if error.cls_name != "DagsterAssetCheckFailedError":  # reported below, as the check it is
                self.step_failures.append(f"{where}{event.step_key}: {_error_text(error)}")
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


Execute = Callable[..., dg.ExecuteInProcessResult]


def executor(
    job_def: Callable[[str], dg.JobDefinition],
    instance: dg.DagsterInstance,
    report: RunReport,
    log_level: str = "INFO",
    tags: Mapping[str, str] | None = None,
) -> Execute:
    """`execute(job_name, assets, partition=None, tags=None, ops=None)`: one run of the named job in
    this process, on `instance`, its outcome added to `report`; a failure is reported, never raised.
    `ops`: op name -> its config (a promotion, the store an external validation reads)."""
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}

    def execute(job_name: str, selected: set, partition: str | None = None, run_tags=None, ops=None):
        config = {**run_config, "ops": {name: {"config": value} for name, value in ops.items()}} if ops else run_config
        result = job_def(job_name).execute_in_process(
            run_config=config,
            instance=instance,
            partition_key=partition,
            asset_selection=sorted(selected, key=str),
            raise_on_error=False,
            tags={**(tags or {}), **(run_tags or {})},
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
