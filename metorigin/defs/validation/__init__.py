"""The validation group: another store's frozen models on this cohort (`metorigin validate`)."""

import dagster as dg

from metorigin.core.study import StudySettings
from metorigin.defs.validation import assets
from metorigin.runtime.versions import with_code_versions


def definitions(study: StudySettings) -> dg.Definitions:
    """This group's assets (with the study's code versions), checks, sensors and schedules."""
    return dg.Definitions(
        assets=with_code_versions(dg.load_assets_from_modules([assets]), study),
        asset_checks=[],
        sensors=[],
        schedules=[],
    )
