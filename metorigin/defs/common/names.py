"""The names several groups (and the run machinery) share: groups, jobs, tags and asset keys.

A group subpackage never imports another group's modules (an import contract says so); what they
must agree on is named here once. The group of an asset is the folder its module sits in
(`defs/<group>/`), except the dbt steps, which keep the groups of the folders their SQL is in.
"""

from __future__ import annotations

import dagster as dg

COHORT_GROUP = "cohort"
PER_SCAN_GROUP = "imaging"  # one partition per scan
FEATURE_STORE_GROUP = "feature_store"
STUDY_GROUP = "study"
VALIDATION_GROUP = "validation"

# The named jobs (defs/jobs.py), by the name the runs list shows.
INGEST_COHORT_JOB = "ingest_cohort"
PROCESS_SCAN_JOB = "process_scan"
PROCESS_SCANS_JOB = "process_scans"  # a batch: process_scan for each scan, in one process
BATCH_OP = "process_scan_batch"  # the op of process_scans, whose config lists the scans
BUILD_FEATURE_STORE_JOB = "build_feature_store"
RUN_STUDY_JOB = "run_study"
PROMOTE_MODELS_JOB = "promote_models"
VALIDATE_MODELS_JOB = "validate_models"

# The pool of the steps that write the DuckDB file (the dbt steps): dagster.yaml admits one at a time.
DUCKDB_WRITE_POOL = "duckdb_write"
# Jobs that write the whole store: the run queue in dagster.yaml admits one at a time.
WRITES_STORE = {"metorigin/writes_store": "true"}
# Runs this process executes itself (the CLI, tests): a server that stops never leaves them behind.
LAUNCHED_HERE = {"metorigin/launched_by": "metorigin run"}
BATCH_TAG = "metorigin/batch"  # on each scan's run: the `process_scans` run that made it
REQUEST_TAG = "metorigin/request"  # on each scan's run: the version of what it was asked to process
# The tag Dagster reads an observation's data version from (dagster/_core/definitions/data_version.py;
# `AssetObservation` takes no data version argument).
DATA_VERSION_TAG = "dagster/data_version"
COHORT_FINGERPRINT = "cohort_fingerprint"  # metadata of `scans`: the cohort as that ingest read it

# A run that has not finished holds its scans (or the store): Dagster's public statuses, split as
# Dagster splits them (tests/test_dagster_internals.py compares; MANAGED runs are neither).
_status = dg.DagsterRunStatus
FINISHED_STATUSES = (_status.SUCCESS, _status.FAILURE, _status.CANCELED)
NOT_FINISHED_STATUSES = (
    _status.QUEUED,
    _status.NOT_STARTED,
    _status.STARTING,
    _status.STARTED,
    _status.SUSPENDED,
    _status.CANCELING,
)

KINDS = {"python", "parquet"}
SCAN_INPUTS = dg.AssetKey("scan_inputs")
SCAN_INTEGRITY = dg.AssetKey("scan_integrity")
PROMOTIONS = dg.AssetKey("model_promotions")  # what the per-scan predictions score with
LESION_FEATURES = dg.AssetKey([FEATURE_STORE_GROUP, "lesion_features"])
TRAINING_MATRIX = dg.AssetKey([FEATURE_STORE_GROUP, "training_matrix"])


def per_scan_keys(graph) -> set[dg.AssetKey]:
    """The per-scan assets a run materialises (not `scan_inputs`, which ingest observes)."""
    return {k for k in dg.AssetSelection.groups(PER_SCAN_GROUP).resolve(graph) if graph.get(k).is_materializable}
