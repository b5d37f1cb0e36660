"""The study group: the split, the models, Tables 2-3, the registry, the report, and the study's
retraining schedule (when the study file sets one)."""

import dagster as dg

from metorigin.core.study import StudySettings
from metorigin.defs.study import assets, evaluation, registry, report
from metorigin.defs.study.arms import ARM_ASSETS
from metorigin.defs.study.schedules import retrain_schedule
from metorigin.runtime.versions import with_code_versions


def definitions(study: StudySettings) -> dg.Definitions:
    """This group's assets (with the study's code versions), checks, sensors and schedules."""
    return dg.Definitions(
        assets=with_code_versions(
            [*dg.load_assets_from_modules([assets, evaluation, registry, report]), *ARM_ASSETS], study
        ),
        asset_checks=[],
        sensors=[],
        schedules=[*retrain_schedule(study)],
    )
