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
(this sensor, after a build that changed the training data), or a cron schedule (`retrain_study`),
which retrains if the feature store changed since the last training. Both run only what is stale.
"""

from __future__ import annotations

import os
import time

import dagster as dg
from dagster._core.storage.dagster_run import FINISHED_STATUSES as FINISHED
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES as NOT_FINISHED
from dagster._utils.schedules import is_valid_cron_string

from metorigin.core.errors import StudyFileError
from metorigin.core.study import RETRAIN_POLICIES, StudySettings

from .jobs import build_feature_store_job, ingest_cohort_job, process_scan_job, run_study_job
from .resources import SettingsResource
from .scan_batches import process_scans_job
from .staleness import feature_store_is_stale, latest_storage_id, stale_closure

SENSOR_INTERVAL_S = int(os.environ.get("METORIGIN_SENSOR_INTERVAL_S", "60"))  # tests use a few seconds
QUIET_S = 2 * SENSOR_INTERVAL_S
FEEDING_JOBS = (ingest_cohort_job.name, process_scans_job.name, process_scan_job.name)
WRITING_JOBS = (*FEEDING_JOBS, build_feature_store_job.name, run_study_job.name)


def _job_keys(repository: dg.RepositoryDefinition, job_name: str) -> set:
    return set(repository.get_job(job_name).asset_layer.executable_asset_keys)


def _in_flight(instance: dg.DagsterInstance, jobs: tuple[str, ...]) -> list[str]:
    records = instance.get_run_records(dg.RunsFilter(statuses=[*NOT_FINISHED]))
    return [r.dagster_run.job_name for r in records if r.dagster_run.job_name in jobs]


def _seconds_since_last(instance: dg.DagsterInstance, jobs: tuple[str, ...]) -> float:
    ends = [
        record.end_time
        for job in jobs
        for record in instance.get_run_records(dg.RunsFilter(job_name=job, statuses=[*FINISHED]), limit=1)
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
    busy = _in_flight(instance, WRITING_JOBS)
    if busy:
        return dg.SkipReason(f"waiting: {len(busy)} run(s) in flight ({', '.join(sorted(set(busy)))})")
    quiet = _seconds_since_last(instance, FEEDING_JOBS)
    if quiet < QUIET_S:
        return dg.SkipReason(f"waiting for a quiet period: the last ingest or scan run ended {quiet:.0f} s ago")
    models = _job_keys(repository, build_feature_store_job.name)
    per_scan = _job_keys(repository, process_scan_job.name)
    if feature_store_is_stale(instance, repository.asset_graph, models, per_scan):
        # Keyed by the newest input: a build that fails is not retried every tick, only on new input.
        newest = latest_storage_id(instance, per_scan | _job_keys(repository, ingest_cohort_job.name))
        return dg.RunRequest(run_key=f"feature-store-{newest}", job_name=build_feature_store_job.name)
    study = settings.settings()
    if study.retrain == "on_change":
        stale = stale_closure(instance, repository.asset_graph, _job_keys(repository, run_study_job.name))
        if stale:
            newest = latest_storage_id(instance, models)
            return dg.RunRequest(
                run_key=f"study-{newest}", job_name=run_study_job.name, asset_selection=sorted(stale, key=str)
            )
    return dg.SkipReason(
        "the feature store is current" + ("" if study.retrain != "on_change" else ", and so is the study")
    )


def retrain_problems(study: StudySettings, source: str) -> list[StudyFileError]:
    """A `retrain` cron schedule Dagster cannot run (e.g. `99 99 * * *`), caught before any work."""
    if study.retrain in RETRAIN_POLICIES or is_valid_cron_string(study.retrain):
        return []
    return [
        StudyFileError(
            source,
            "retrain",
            f"{study.retrain!r} is not a cron schedule Dagster can run",
            "use manual, on_change, or five cron fields such as '0 3 * * 1' (minute hour day month weekday)",
        )
    ]


def retrain_schedule(study: StudySettings) -> list[dg.ScheduleDefinition]:
    """`retrain_study` on the study's cron schedule, when `retrain` is one."""
    if study.retrain in RETRAIN_POLICIES:
        return []

    @dg.schedule(
        job=run_study_job,
        cron_schedule=study.retrain,
        name="retrain_study",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Retrains the study on the study file's schedule ({study.retrain}) if its inputs changed.",
    )
    def retrain_study(context: dg.ScheduleEvaluationContext):
        repository = context.repository_def
        stale = stale_closure(context.instance, repository.asset_graph, _job_keys(repository, run_study_job.name))
        if not stale:
            return dg.SkipReason("the study is current")
        return dg.RunRequest(asset_selection=sorted(stale, key=str))

    return [retrain_study]
