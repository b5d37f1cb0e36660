"""Everything Dagster loads: `dagster dev -m orchestration.definitions` and `metorigin run` alike."""

import dagster as dg

from assets import cohort, lesions, radiomics, segmentation, slices

from .jobs import ingest_cohort_job
from .resources import resources_from_env
from .sensors import new_scans_sensor

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([cohort, segmentation, lesions, radiomics, slices]),
    asset_checks=[],
    jobs=[ingest_cohort_job],
    sensors=[new_scans_sensor],
    resources=resources_from_env(),
)
