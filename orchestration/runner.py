"""Materialise an asset selection through the same Definitions the UI loads, and summarise it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import dagster as dg

from base.lifecycle import scans_with_results

from .cohort_assets import COHORT_GROUP
from .dbt import FEATURE_STORE_GROUP
from .jobs import build_feature_store_job, ingest_cohort_job, process_scan_job, run_study_job
from .metadata import N_RETIRED, NOTICE
from .partitions import included_scan_partitions
from .scan_assets import PER_SCAN_GROUP, per_scan_keys
from .staleness import StaleStatus, feature_store_is_stale, stale_closure, status_resolver
from .study_assets import STUDY_GROUP


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


# Runs this process executes itself (the CLI, tests): a server that stops never leaves them behind.
LAUNCHED_HERE = {"metorigin/launched_by": "metorigin run"}

# The groups in the order they run, each with the named job that materialises it (jobs.py).
PHASES = (
    (COHORT_GROUP, ingest_cohort_job.name),
    (PER_SCAN_GROUP, process_scan_job.name),
    (FEATURE_STORE_GROUP, build_feature_store_job.name),
    (STUDY_GROUP, run_study_job.name),
)


def run_selection(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    selection: str | None = None,
    log_level: str = "INFO",
    progress: Callable[[str], None] = print,
    force: bool = False,
) -> RunReport:
    """The selection through the named jobs the UI shows: the cohort, then one run per scan, then
    the feature store, then the study. Only what is stale or missing runs (`force`: everything).

    Ingest always runs: it is how a change in the cohort is found (a header read, seconds), and its
    assets keep their data version when nothing changed, so nothing after them goes stale. One run
    per scan is what a backfill in the UI does too: a scan that fails marks only its own partition,
    and the store keeps that scan's earlier results.
    """
    graph = defs.resolve_asset_graph()
    chosen = dg.AssetSelection.from_string(selection) if selection else dg.AssetSelection.all()
    matched = chosen.resolve(graph)
    keys = {k for k in matched if graph.get(k).is_materializable}
    if not keys:
        observed = ", ".join(sorted(k.to_user_string() for k in matched))
        raise ValueError(
            f"the selection {selection!r} matches no asset"
            + (f" that runs (only {observed}, which ingest observes)" if observed else "")
        )
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    report = RunReport()

    def execute(job_name: str, selected: set, partition: str | None = None):
        job = defs.resolve_job_def(job_name)
        result = job.execute_in_process(
            run_config=run_config,
            instance=instance,
            partition_key=partition,
            asset_selection=sorted(selected, key=str),
            raise_on_error=False,
            tags=LAUNCHED_HERE,
        )
        report.add(result, partition)
        return result

    for group, job_name in PHASES:
        phase = {k for k in keys if graph.get(k).group_name == group}
        if not phase:
            continue
        if group == PER_SCAN_GROUP:
            _process_scans(defs, instance, phase, force, report, execute, progress)
            continue
        # The cohort always; the feature store all of it once scans were processed or retired, or its
        # inputs changed before (`feature_store_is_stale`: past 100 scans Dagster's staleness stops
        # following each partition); otherwise what is stale.
        changed = force or group == COHORT_GROUP
        if group == FEATURE_STORE_GROUP:
            changed |= report.scans_processed > 0 or report.retired > 0
            changed |= feature_store_is_stale(instance, graph, phase, per_scan_keys(graph))
        selected = phase if changed else stale_closure(instance, graph, phase)
        if not selected:
            report.skipped[group] = len(phase)
            continue
        blocked = len(report.blocked_by)
        result = execute(job_name, selected)
        if not result.success or len(report.blocked_by) > blocked:
            return report  # what came after would build on a problem (a doubtful cohort, a failed build)
    return report


def _process_scans(defs, instance, phase: set, force: bool, report: RunReport, execute, progress) -> None:
    """One `process_scan` run per included scan that has stale or missing assets.

    A scan whose files changed by time only (a copied cohort) first re-runs `scan_integrity`
    alone: it hashes the content, and when the bytes are the same its data version is too, so
    nothing after it is recomputed."""
    graph = defs.resolve_asset_graph()
    integrity = dg.AssetKey("scan_integrity")
    scans = included_scan_partitions(instance, defs.resources["store"].store())
    present = scans_with_results(defs.resources["store"].store())
    for done, scan_id in enumerate(scans, start=1):
        checked = False
        if force or scan_id not in present:
            selected = phase
        else:
            selected = stale_closure(instance, graph, phase, scan_id)
            if integrity in selected and len(selected) > 1 and not _missing(instance, graph, phase, scan_id):
                result = execute(process_scan_job.name, {integrity}, scan_id)
                if not result.success:
                    progress(f"[{done}/{len(scans)}] {scan_id}: FAILED")
                    continue
                checked = True
                selected = stale_closure(instance, graph, phase - {integrity}, scan_id)
        if not selected:
            report.skipped[PER_SCAN_GROUP] = report.skipped.get(PER_SCAN_GROUP, 0) + 1
            continue
        if integrity in phase and not checked:
            selected = selected | {integrity}  # its blocking check gates the rest (the check is cached)
        result = execute(process_scan_job.name, selected, scan_id)
        report.scans_processed += result.success  # a failed scan keeps its earlier results: nothing new
        progress(f"[{done}/{len(scans)}] {scan_id}: {'ok' if result.success else 'FAILED'}")
    if report.skipped.get(PER_SCAN_GROUP):
        progress(f"{report.skipped[PER_SCAN_GROUP]} of {len(scans)} scans unchanged: skipped")


def _missing(instance, graph, keys: set, partition: str) -> bool:
    resolver = status_resolver(instance, graph)
    return any(resolver.get_status(k, partition) == StaleStatus.MISSING for k in keys)


def _error_text(error) -> str:
    """The error and its causes, one line each: Dagster wraps the message a user needs in its own."""
    parts = []
    while error is not None:
        parts.append(error.message.strip().rstrip(":"))
        error = error.cause
    return " <- ".join(parts) or "failed"
