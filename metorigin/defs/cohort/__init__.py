"""The cohort group: the study file and the cohort CSVs read, validated and registered (`study_settings`,
`patients`, `scans`), and `model_promotions` (materialised by every ingest)."""

import dagster as dg

from metorigin.core.study import StudySettings
from metorigin.defs.cohort import assets, promotions
from metorigin.runtime.versions import with_code_versions


def definitions(study: StudySettings) -> dg.Definitions:
    """This group's assets (with the study's code versions), checks, sensors and schedules."""
    return dg.Definitions(
        assets=with_code_versions(dg.load_assets_from_modules([assets, promotions]), study),
        asset_checks=[],
        sensors=[],
        schedules=[],
    )
