"""Materialise an asset selection through the same Definitions the UI loads, and summarise it."""

from __future__ import annotations

from typing import Callable

import dagster as dg

from metorigin.defs.common.names import (
    BUILD_FEATURE_STORE_JOB,
    COHORT_GROUP,
    FEATURE_STORE_GROUP,
    INGEST_COHORT_JOB,
    LAUNCHED_HERE,
    PER_SCAN_GROUP,
    PROCESS_SCAN_JOB,
    PROMOTE_MODELS_JOB,
    RUN_STUDY_JOB,
    STUDY_GROUP,
    VALIDATE_MODELS_JOB,
    VALIDATION_GROUP,
    per_scan_keys,
)
from metorigin.runtime.execution import RunReport, executor
from metorigin.runtime.scan_runs import process_scans
from metorigin.runtime.staleness import feature_store_is_stale, stale_closure

# Runs this process executes itself (the CLI, tests): a server that stops never leaves them behind.

# The groups in the order they run, each with the named job that materialises it (jobs.py).
PHASES = (
    (COHORT_GROUP, INGEST_COHORT_JOB),
    (PER_SCAN_GROUP, PROCESS_SCAN_JOB),
    (FEATURE_STORE_GROUP, BUILD_FEATURE_STORE_JOB),
    (STUDY_GROUP, RUN_STUDY_JOB),
)


def run_selection(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    selection: str | None = None,
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
    # External validation needs the store whose models it validates: `metorigin validate` runs it.
    matched = (chosen - dg.AssetSelection.groups(VALIDATION_GROUP)).resolve(graph)
    keys = {k for k in matched if graph.get(k).is_materializable}
    if not keys:
        observed = ", ".join(sorted(k.to_user_string() for k in matched))
        raise ValueError(
            f"the selection {selection!r} matches no asset"
            + (f" that runs (only {observed}, which ingest observes)" if observed else "")
        )
    report = RunReport()
    execute = executor(defs.resolve_job_def, instance, report, tags=LAUNCHED_HERE)
    config = defs.resources["settings"].run_config()

    for group, job_name in PHASES:
        phase = {k for k in keys if graph.get(k).group_name == group}
        if not phase:
            continue
        if group == PER_SCAN_GROUP:
            store = defs.resources["store"].store()
            repository = defs.get_repository_def()
            process_scans(repository, instance, store, phase, report, progress, config, LAUNCHED_HERE, force)
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


def promote(defs: dg.Definitions, instance: dg.DagsterInstance, config: dict, report: RunReport) -> RunReport:
    """A `promote_models` run: the promotion (`config`: promote, why, who) and the registry tables."""
    keys = defs.resolve_job_def(PROMOTE_MODELS_JOB).asset_layer.selected_asset_keys
    execute = executor(defs.resolve_job_def, instance, report, tags=LAUNCHED_HERE)
    execute(PROMOTE_MODELS_JOB, keys, ops={"model_promotions": config})
    return report


# What `metorigin validate` builds of the validation cohort's store: up to its feature store, never
# its study (nothing is trained there).
VALIDATION_STORE = f"not group:{STUDY_GROUP}"


def validate_with(defs: dg.Definitions, instance: dg.DagsterInstance, models_store) -> RunReport:
    """`metorigin validate`: this store's cohort up to its feature store, then the external
    validation of `models_store`'s frozen models, its dbt step and its report."""
    report = run_selection(defs, instance, VALIDATION_STORE)
    return external_validation(defs, instance, models_store, report) if report.ok else report


def external_validation(defs: dg.Definitions, instance: dg.DagsterInstance, models_store, report: RunReport):
    """A `validate_models` run with `models_store`: the group validation on this store's feature store."""
    keys = defs.resolve_job_def(VALIDATE_MODELS_JOB).asset_layer.selected_asset_keys
    execute = executor(defs.resolve_job_def, instance, report, tags=LAUNCHED_HERE)
    execute(VALIDATE_MODELS_JOB, keys, ops={"external_validation": {"models_store": str(models_store)}})
    return report
