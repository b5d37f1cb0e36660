"""The feature store group: the dbt project as Dagster assets, its data-quality check, and the
sensor that rebuilds it once per batch of new scans."""

import dagster as dg

from metorigin.core.study import StudySettings
from metorigin.defs.feature_store.checks import lesion_features_quality
from metorigin.defs.feature_store.dbt import dbt_steps
from metorigin.defs.feature_store.sensors import feature_store_after_a_batch


def definitions(study: StudySettings) -> dg.Definitions:
    """This group's assets (with the study's code versions), checks, sensors and schedules."""
    return dg.Definitions(
        assets=[*dbt_steps()],
        asset_checks=[lesion_features_quality],
        sensors=[feature_store_after_a_batch],
        schedules=[],
    )
