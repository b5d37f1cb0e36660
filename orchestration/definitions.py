"""Everything Dagster loads: `dagster dev -m orchestration.definitions` and `metorigin run` alike."""

import dagster as dg

from . import cohort_assets, scan_assets, study_assets
from .checks import ASSET_CHECKS
from .dbt import dbt_resource, feature_store_models, gated_models, result_models
from .jobs import ingest_cohort_job, process_scan_job
from .resources import resources_from_env
from .sensors import new_scans_sensor, nightly_catch_up


def build_definitions(resources: dict) -> dg.Definitions:
    return dg.Definitions(
        assets=[
            *dg.load_assets_from_modules([cohort_assets, scan_assets, study_assets]),
            feature_store_models,
            gated_models,
            result_models,
        ],
        asset_checks=ASSET_CHECKS,
        jobs=[ingest_cohort_job, process_scan_job],
        sensors=[new_scans_sensor],
        schedules=[nightly_catch_up],
        resources={"dbt": dbt_resource(), **resources},
    )


defs = build_definitions(resources_from_env())
