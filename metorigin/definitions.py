"""Everything Dagster loads: `dagster dev -m metorigin.definitions` and `metorigin run` alike."""

import os
from functools import lru_cache

import dagster as dg

from .orchestration import cohort_assets, model_assets, report_assets, scan_assets, study_assets, validation_assets
from .orchestration.automation import feature_store_after_a_batch, retrain_schedule
from .orchestration.checks import ASSET_CHECKS
from .orchestration.dbt import dbt_resource, dbt_steps
from .orchestration.jobs import JOBS
from .orchestration.resources import resources_from_env
from .orchestration.scan_batches import process_scans_job
from .orchestration.sensors import new_scans_sensor, nightly_catch_up
from .orchestration.versions import with_code_versions


def build_definitions(resources: dict) -> dg.Definitions:
    """The definitions of one store and study: the study fixes the code versions (versions.py)."""
    study = resources["settings"].settings()
    modules = [cohort_assets, scan_assets, study_assets, model_assets, validation_assets, report_assets]
    python_assets = dg.load_assets_from_modules(modules)
    return dg.Definitions(
        assets=[
            *with_code_versions(python_assets, study),
            cohort_assets.scan_inputs,
            *dbt_steps(),
        ],
        asset_checks=ASSET_CHECKS,
        jobs=[*JOBS, process_scans_job],
        sensors=[new_scans_sensor, feature_store_after_a_batch],
        schedules=[nightly_catch_up, *retrain_schedule(study)],
        resources={"dbt": dbt_resource(), **resources},
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What a code location loads, built when it loads (not at import): the environment it loads in
    names the cohort, the store and the study (`metorigin ui` and the run processes set it)."""
    return _definitions_in(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("METORIGIN_"))))


@lru_cache(maxsize=4)
def _definitions_in(environment: tuple) -> dg.Definitions:
    """One Definitions object per environment: Dagster loads a run's job again for each other asset
    selection (its memo holds one job), and a Definitions object keeps the repository it resolved
    (seconds), so loading it again is quick."""
    return build_definitions(resources_from_env())
