"""From a new scan to new numbers under the daemon: the feature store rebuilt once per batch, the
study retrained on the study file's `retrain` policy.

Why a sensor and not declarative automation conditions: a batch of new scans reaches the store in
two steps, an ingest run and then the per-scan runs the cohort sensor launches on its next tick.
Between the two nothing is in progress, so a condition such as "an input changed and none is
being computed" fires after the ingest and again after the scans (two builds per batch, the first
one without them). This sensor sees runs of every job: it rebuilds the feature store when its
inputs changed, no ingest or per-scan run is queued or running, and the last one ended a quiet
period ago (`QUIET_S`, two ticks of the cohort sensor, so that sensor has launched what an ingest
found). A failed scan does not hold the batch back: its run ended, the others are built.

The study follows `retrain` in the study file: `manual` (only `metorigin run` or the UI), `on_change`
(this sensor, after a build that changed the training data), or a cron schedule (`retrain_study`,
defs/study/schedules.py), which retrains if the feature store changed since the last training. Both
run only what is stale.
"""

from __future__ import annotations

import time

import dagster as dg

from metorigin.core.config import SENSOR_INTERVAL_S
from metorigin.defs.common.names import FINISHED_STATUSES, NOT_FINISHED_STATUSES
from metorigin.defs.common.resources import SettingsResource
from metorigin.defs.jobs import (
    build_feature_store_job,
    ingest_cohort_job,
    process_scan_job,
    process_scans_job,
    run_study_job,
)
from metorigin.runtime.dead_runs import release as release_dead_runs
from metorigin.runtime.staleness import feature_store_is_stale, job_asset_keys, latest_storage_id, stale_closure

QUIET_S = 2 * SENSOR_INTERVAL_S
FEEDING_JOBS = (ingest_cohort_job.name, process_scans_job.name, process_scan_job.name)
WRITING_JOBS = (*FEEDING_JOBS, build_feature_store_job.name, run_study_job.name)


def _in_flight(instance: dg.DagsterInstance, jobs: tuple[str, ...]) -> list[str]:
    records = instance.get_run_records(dg.RunsFilter(statuses=[*NOT_FINISHED_STATUSES]))
    return [r.dagster_run.job_name for r in records if r.dagster_run.job_name in jobs]


def _seconds_since_last(instance: dg.DagsterInstance, jobs: tuple[str, ...]) -> float:
    ends = [
        record.end_time
        for job in jobs
        for record in instance.get_run_records(dg.RunsFilter(job_name=job, statuses=[*FINISHED_STATUSES]), limit=1)
        if record.end_time
    ]
    return time.time() - max(ends) if ends else float("inf")


@dg.sensor(
    jobs=[build_feature_store_job, run_study_job],
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Rebuilds the feature store once per batch of ingested and processed scans (when its inputs "
    "changed and no ingest or per-scan run has been queued or running for a quiet period), then retrains the "
    "study if the study file's `retrain` is `on_change`.",
)
def feature_store_after_a_batch(context: dg.SensorEvaluationContext, settings: SettingsResource):
    instance, repository = context.instance, context.repository_def
    for line in release_dead_runs(instance, "the feature store's sensor"):  # a killed run holds nothing up
        context.log.warning(line)
    busy = _in_flight(instance, WRITING_JOBS)
    if busy:
        return dg.SkipReason(f"waiting: {len(busy)} run(s) in flight ({', '.join(sorted(set(busy)))})")
    quiet = _seconds_since_last(instance, FEEDING_JOBS)
    if quiet < QUIET_S:
        return dg.SkipReason(f"waiting for a quiet period: the last ingest or scan run ended {quiet:.0f} s ago")
    models = job_asset_keys(repository, build_feature_store_job.name)
    per_scan = job_asset_keys(repository, process_scan_job.name)
    if feature_store_is_stale(instance, repository.asset_graph, models, per_scan):
        # Keyed by the newest input: a build that fails is not retried every tick, only on new input.
        newest = latest_storage_id(instance, per_scan | job_asset_keys(repository, ingest_cohort_job.name))
        return dg.RunRequest(run_key=f"feature-store-{newest}", job_name=build_feature_store_job.name)
    study = settings.settings()
    if study.retrain == "on_change":
        stale = stale_closure(instance, repository.asset_graph, job_asset_keys(repository, run_study_job.name))
        if stale:
            newest = latest_storage_id(instance, models)
            return dg.RunRequest(
                run_key=f"study-{newest}", job_name=run_study_job.name, asset_selection=sorted(stale, key=str)
            )
    return dg.SkipReason(
        "the feature store is current" + ("" if study.retrain != "on_change" else ", and so is the study")
    )
