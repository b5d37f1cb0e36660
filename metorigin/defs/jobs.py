"""The named jobs: what the CLI, the sensors, the schedules, automation and the UI launch, so the
runs list reads as a history (ingest, scans, feature store, study) rather than ad-hoc selections.

Each job materialises one group (by its name: no job imports a group's assets), and the sensors and
schedules of several groups target them, so they are declared here, once, above the run machinery
they use and below the groups. Every job runs its steps in the run's own process
(`in_process_executor`; `process_scan` through the per-scan executor, placement.py): a per-scan run
is a few seconds of work, and the default multiprocess executor would start a Python process per
step (~10 s each) for it. Jobs that write the whole store carry `WRITES_STORE`, which the run queue
in dagster.yaml admits one at a time.
"""

import dagster as dg
from pydantic import Field

from metorigin.defs.common.names import (
    BATCH_OP,
    BATCH_TAG,
    BUILD_FEATURE_STORE_JOB,
    COHORT_GROUP,
    FEATURE_STORE_GROUP,
    INGEST_COHORT_JOB,
    PER_SCAN_GROUP,
    PROCESS_SCAN_JOB,
    PROCESS_SCANS_JOB,
    PROMOTE_MODELS_JOB,
    REQUEST_TAG,
    RUN_STUDY_JOB,
    STUDY_GROUP,
    VALIDATE_MODELS_JOB,
    VALIDATION_GROUP,
    WRITES_STORE,
    per_scan_keys,
)
from metorigin.defs.common.partitions import scan_partitions
from metorigin.defs.common.resources import SettingsResource, StoreResource
from metorigin.runtime.batches import scans_awaiting_processing
from metorigin.runtime.execution import RunReport
from metorigin.runtime.scan_runs import process_scans

# group cohort
ingest_cohort_job = dg.define_asset_job(
    INGEST_COHORT_JOB,
    selection=dg.AssetSelection.groups(COHORT_GROUP),
    description="Read and validate patients.csv and scans.csv; register included scans as partitions.",
    executor_def=dg.in_process_executor,
    tags=WRITES_STORE,
)


# group imaging
process_scan_job = dg.define_asset_job(
    PROCESS_SCAN_JOB,
    selection=dg.AssetSelection.groups(PER_SCAN_GROUP),
    partitions_def=scan_partitions,
    description="The full-decode check, segmentation, lesions, radiomics features, CNN slices and predictions "
    "of one scan.",
    # No executor of its own: the definitions' default, in the run's process or on a Dask cluster (placement.py).
)


class ScanBatch(dg.Config):
    scans: list[str] = Field(
        default_factory=list,
        description="Scan ids to process; empty: every included scan with a stale or missing per-scan asset.",
    )


@dg.op(name=BATCH_OP, description="Runs the process_scan job in this process for each scan of the batch.")
def process_scans_op(
    context: dg.OpExecutionContext, config: ScanBatch, store: StoreResource, settings: SettingsResource
) -> None:
    repository = context.repository_def
    # A list (the sensor's, the schedule's) was stale when asked for: `process_scans` checks each
    # scan again as it reaches it, so it is not asked twice here.
    waiting = scans_awaiting_processing(
        context.instance, store, repository, only=config.scans or None, stale_only=not config.scans
    )
    if not waiting:
        context.log.info("every scan of the batch is processed and current")
        return
    report = RunReport()
    process_scans(
        repository,
        context.instance,
        store.store(),
        per_scan_keys(repository.asset_graph),
        report,
        context.log.info,
        settings.run_config(),
        tags={BATCH_TAG: context.run_id},
        scans={scan.scan_id: {REQUEST_TAG: scan.key} for scan in waiting},
    )
    failed = len(waiting) - report.scans_processed - report.skipped.get(PER_SCAN_GROUP, 0)
    if failed:
        problems = report.step_failures + [f"{name}: {text}" for name, text in report.failed_checks]
        raise dg.Failure(
            description=f"{failed} of {len(waiting)} scans failed (their own process_scan runs say why); "
            "the others are processed",
            metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "-")},
        )


@dg.job(
    name=PROCESS_SCANS_JOB,
    description="Processes a batch of scans, one process_scan run each, in one process: what the sensor and "
    "the nightly schedule launch. Launched without scans, it processes every stale one.",
    executor_def=dg.in_process_executor,
)
def process_scans_job():
    process_scans_op()


# group feature_store
build_feature_store_job = dg.define_asset_job(
    BUILD_FEATURE_STORE_JOB,
    selection=dg.AssetSelection.groups(FEATURE_STORE_GROUP),
    description="dbt: the DuckDB feature store (staging, core tables, marts, training matrix) from the lake.",
    executor_def=dg.in_process_executor,
    tags=WRITES_STORE,
)


# group study
run_study_job = dg.define_asset_job(
    RUN_STUDY_JOB,
    selection=dg.AssetSelection.groups(STUDY_GROUP),
    description="The study: patient split, feature selection, the radiomics models, the DenseNet, the "
    "combined model and Tables 2-3.",
    executor_def=dg.in_process_executor,
    tags=WRITES_STORE,
)

promote_models_job = dg.define_asset_job(
    PROMOTE_MODELS_JOB,
    selection=dg.AssetSelection.assets("model_promotions")
    | dg.AssetSelection.assets(["feature_store", "models"], ["feature_store", "model_promotions"]),
    description="Promote models (launchpad: `ops: {model_promotions: {config: {promote: [ID], why: ...}}}`) and "
    "publish the registry tables; every scan's predictions then go stale and are scored with them.",
    executor_def=dg.in_process_executor,
    tags=WRITES_STORE,
)


# group validation
validate_models_job = dg.define_asset_job(
    VALIDATE_MODELS_JOB,
    selection=dg.AssetSelection.groups(VALIDATION_GROUP),
    description="External validation: another store's frozen models on this cohort (`metorigin validate`; "
    "in the launchpad, set `models_store`).",
    executor_def=dg.in_process_executor,
    tags=WRITES_STORE,
)


JOBS = (
    ingest_cohort_job,
    process_scan_job,
    build_feature_store_job,
    run_study_job,
    validate_models_job,
    promote_models_job,
    process_scans_job,
)
