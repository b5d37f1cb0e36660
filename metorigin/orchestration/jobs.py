"""The named jobs: what the CLI, the sensor, the schedule, automation and the UI launch, so the
runs list reads as a history (ingest, scans, feature store, study) rather than ad-hoc selections.
(`process_scans`, which runs `process_scan` for a batch of scans in one process, is in scan_batches.py.)

Every job runs its steps in the run's own process (`in_process_executor`): a per-scan run is a
few seconds of work, and the default multiprocess executor would start a Python process per step
(~10 s each) for it. Jobs that write the whole store carry `WRITES_STORE`, which the run queue in
dagster.yaml admits one at a time (the store's writer lease would serialise them anyway, with a
run holding a queue slot while it waits).
"""

import dagster as dg

from .cohort_assets import COHORT_GROUP
from .dbt import FEATURE_STORE_GROUP
from .partitions import scan_partitions
from .placement import per_scan_executor
from .scan_assets import PER_SCAN_GROUP
from .study_assets import STUDY_GROUP
from .validation_assets import VALIDATION_GROUP

WRITES_STORE = {"metorigin/writes_store": "true"}

ingest_cohort_job = dg.define_asset_job(
    "ingest_cohort",
    selection=dg.AssetSelection.groups(COHORT_GROUP),
    description="Read and validate patients.csv and scans.csv; register included scans as partitions.",
    executor_def=dg.in_process_executor,
    tags=WRITES_STORE,
)

process_scan_job = dg.define_asset_job(
    "process_scan",
    selection=dg.AssetSelection.groups(PER_SCAN_GROUP),
    partitions_def=scan_partitions,
    description="The full-decode check, segmentation, lesions, radiomics features, CNN slices and predictions "
    "of one scan.",
    executor_def=per_scan_executor,  # in the run's process, or on a Dask cluster (placement.py)
)

build_feature_store_job = dg.define_asset_job(
    "build_feature_store",
    selection=dg.AssetSelection.groups(FEATURE_STORE_GROUP),
    description="dbt: the DuckDB feature store (staging, core tables, marts, training matrix) from the lake.",
    executor_def=dg.in_process_executor,
    tags=WRITES_STORE,
)

run_study_job = dg.define_asset_job(
    "run_study",
    selection=dg.AssetSelection.groups(STUDY_GROUP),
    description="The study: patient split, feature selection, the radiomics models, the DenseNet, the "
    "combined model and Tables 2-3.",
    executor_def=dg.in_process_executor,
    tags=WRITES_STORE,
)

validate_models_job = dg.define_asset_job(
    "validate_models",
    selection=dg.AssetSelection.groups(VALIDATION_GROUP),
    description="External validation: another store's frozen models on this cohort (`metorigin validate`; "
    "in the launchpad, set `models_store`).",
    executor_def=dg.in_process_executor,
    tags=WRITES_STORE,
)

promote_models_job = dg.define_asset_job(
    "promote_models",
    selection=dg.AssetSelection.assets("model_promotions")
    | dg.AssetSelection.assets(["feature_store", "models"], ["feature_store", "model_promotions"]),
    description="Promote models (launchpad: `ops: {model_promotions: {config: {promote: [ID], why: ...}}}`) and "
    "publish the registry tables; every scan's predictions then go stale and are scored with them.",
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
)
