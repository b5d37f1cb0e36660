"""The imaging group: one partition per scan, from the full-decode check to the scan's predictions,
and the sensor and schedule that keep new scans processed."""

import dagster as dg

from metorigin.core.study import StudySettings
from metorigin.defs.imaging import assets, predictions
from metorigin.defs.imaging.sensors import new_scans_sensor, nightly_catch_up
from metorigin.runtime.versions import with_code_versions


def definitions(study: StudySettings) -> dg.Definitions:
    """This group's assets (with the study's code versions), checks, sensors and schedules."""
    return dg.Definitions(
        assets=[
            *with_code_versions([assets.scan_imaging_assets(study), predictions.scan_predictions], study),
            assets.scan_inputs,
        ],
        asset_checks=[],
        sensors=[new_scans_sensor],
        schedules=[nightly_catch_up],
    )
