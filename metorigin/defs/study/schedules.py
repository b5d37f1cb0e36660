"""The study's own schedule: `retrain_study`, when the study file's `retrain` is a cron schedule
(`on_change` is the feature store's sensor, defs/feature_store/sensors.py; `manual` is neither)."""

from __future__ import annotations

import dagster as dg

from metorigin.core.errors import StudyFileError
from metorigin.core.study import RETRAIN_POLICIES, StudySettings
from metorigin.defs.jobs import run_study_job
from metorigin.runtime.staleness import job_asset_keys, stale_closure


def retrain_problems(study: StudySettings, source: str) -> list[StudyFileError]:
    """A `retrain` cron schedule Dagster cannot run (e.g. `99 99 * * *`), caught before any work."""
    if study.retrain in RETRAIN_POLICIES or _runs_as_a_schedule(study.retrain):
        return []
    return [
        StudyFileError(
            source,
            "retrain",
            f"{study.retrain!r} is not a cron schedule Dagster can run",
            "use manual, on_change, or five cron fields such as '0 3 * * 1' (minute hour day month weekday)",
        )
    ]


def _runs_as_a_schedule(cron: str) -> bool:
    """Whether Dagster accepts `cron` for a schedule: it validates it when the schedule is defined."""
    try:
        dg.ScheduleDefinition(name="retrain_check", cron_schedule=cron, job_name=run_study_job.name)
    except dg.DagsterInvalidDefinitionError:
        return False
    return True


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
        stale = stale_closure(context.instance, repository.asset_graph, job_asset_keys(repository, run_study_job.name))
        if not stale:
            return dg.SkipReason("the study is current")
        return dg.RunRequest(asset_selection=sorted(stale, key=str))

    return [retrain_study]
