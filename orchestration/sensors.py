"""The sensor that notices new scans in the cohort folder.

It reads only the two CSVs on most ticks: their content hash is the cursor, so the (slower)
header validation of every image runs only when the cohort actually changed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg

from assets.cohort import PATIENTS_CSV, SCANS_CSV, load_cohort
from assets.errors import CohortError

from .jobs import ingest_cohort_job
from .partitions import scan_partitions
from .resources import CohortResource, SettingsResource


def cohort_fingerprint(cohort_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in (PATIENTS_CSV, SCANS_CSV):
        path = cohort_dir / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    return digest.hexdigest()[:16]


@dg.sensor(job=ingest_cohort_job, minimum_interval_seconds=120, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Registers new included scans as partitions and re-ingests the cohort when its CSVs change.")
def new_scans_sensor(context: dg.SensorEvaluationContext, cohort: CohortResource, settings: SettingsResource):
    cohort_dir = Path(cohort.path)
    fingerprint = cohort_fingerprint(cohort_dir)
    if fingerprint == context.cursor:
        return dg.SkipReason(f"{cohort_dir} unchanged since the last ingest")
    try:
        loaded = load_cohort(cohort_dir, settings.settings().inclusion)
    except CohortError as exc:
        return dg.SkipReason(f"cohort not readable: {exc.message}")
    known = set(context.instance.get_dynamic_partitions(scan_partitions.name))
    new = sorted(set(loaded.included_scan_ids) - known)
    context.update_cursor(fingerprint)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"cohort-{fingerprint}")],
        dynamic_partitions_requests=[scan_partitions.build_add_request(new)] if new else [])
