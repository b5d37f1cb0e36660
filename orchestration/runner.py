"""Materialise an asset selection through the same Definitions the UI loads, and summarise it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import dagster as dg

from .metadata import NOTICE
from .partitions import included_scan_partitions


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

    @property
    def ok(self) -> bool:
        return self.success and not self.failed_checks

    def add(self, result: dg.ExecuteInProcessResult, partition: str | None = None) -> None:
        self.run_ids.append(result.run_id)
        self.success &= result.success
        for event in result.get_asset_materialization_events():
            key = event.asset_key.to_user_string()
            self.materialized[key] = self.materialized.get(key, 0) + 1
            notice = event.step_materialization_data.materialization.metadata.get(NOTICE)
            if notice:
                self.notices += notice.value.splitlines()
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


def run_selection(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    selection: str | None = None,
    log_level: str = "INFO",
    progress: Callable[[str], None] = print,
) -> RunReport:
    """Cohort-level assets in one run, then one run per scan partition, each scan on its own.

    One run per scan is what a backfill in the UI does too: a scan that fails marks only its own
    partition, and the store keeps that scan's earlier results.
    """
    graph = defs.resolve_asset_graph()
    chosen = dg.AssetSelection.from_string(selection) if selection else dg.AssetSelection.all()
    keys = chosen.resolve(graph)
    if not keys:
        raise ValueError(f"the selection {selection!r} matches no asset")
    partitioned = {k for k in keys if graph.get(k).is_partitioned}
    unpartitioned = keys - partitioned
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    report = RunReport()

    def materialize(selected, partition=None):
        result = dg.materialize(
            [*defs.assets, *defs.asset_checks],
            resources=defs.resources,
            instance=instance,
            raise_on_error=False,
            selection=dg.AssetSelection.assets(*selected),
            partition_key=partition,
            run_config=run_config,
        )
        report.add(result, partition)
        return result

    per_scan_outputs = (
        dg.AssetSelection.assets(*(k for k in graph.get_all_asset_keys() if graph.get(k).is_partitioned))
        .downstream()
        .resolve(graph)
    )
    # A multi-asset (the dbt project) runs as one step: if any of its assets needs the per-scan
    # results, all of it waits for them.
    for definition in defs.assets:
        if set(definition.keys) & per_scan_outputs:
            per_scan_outputs |= set(definition.keys)
    before, after = unpartitioned - per_scan_outputs, unpartitioned & per_scan_outputs
    if before:
        materialize(before)
    if report.blocked_by or not report.success:
        return report  # the cohort itself is in doubt: processing scans from it would spread the problem
    if partitioned:
        scans = included_scan_partitions(instance, defs.resources["store"].store())
        for done, scan_id in enumerate(scans, start=1):
            result = materialize(partitioned, scan_id)
            progress(f"[{done}/{len(scans)}] {scan_id}: {'ok' if result.success else 'FAILED'}")
    if after:
        materialize(after)
    return report


def _error_text(error) -> str:
    """The error and its causes, one line each: Dagster wraps the message a user needs in its own."""
    parts = []
    while error is not None:
        parts.append(error.message.strip().rstrip(":"))
        error = error.cause
    return " <- ".join(parts) or "failed"
