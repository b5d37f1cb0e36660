"""The sensor and the schedule that keep the store in step with the cohort folder.

The sensor reads only the two CSVs on most ticks: their content hash is the cursor, so the
(slower) header validation of every image runs only when the cohort changed. Both the sensor and
the nightly schedule then ask for per-scan runs of exactly the scans that are ingested but not yet
processed, so nothing already stored is recomputed.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import dagster as dg

from assets.cohort import PATIENTS_CSV, SCANS_CSV, load_cohort
from base.errors import CohortError
from base.lifecycle import scans_with_results

from .jobs import ingest_cohort_job, process_scan_job
from .partitions import included_scan_partitions, scan_partitions
from .resources import CohortResource, SettingsResource, StoreResource
from .scan_assets import PER_SCAN_GROUP


def cohort_fingerprint(cohort_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in (PATIENTS_CSV, SCANS_CSV):
        path = cohort_dir / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    return digest.hexdigest()[:16]


def scans_awaiting_processing(
    instance: dg.DagsterInstance, store: StoreResource, repository: dg.RepositoryDefinition
) -> list[str]:
    """Included, registered scans that lack any per-scan asset (in the instance, or in the lake: a
    scan that left the cohort and came back had its results retired)."""
    per_scan = dg.AssetSelection.groups(PER_SCAN_GROUP).resolve(repository.asset_graph)
    done = set.intersection(*(instance.get_materialized_partitions(key) for key in per_scan))
    done &= scans_with_results(store.store())
    return [scan_id for scan_id in included_scan_partitions(instance, store.store()) if scan_id not in done]


@dg.sensor(
    jobs=[ingest_cohort_job, process_scan_job],
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Ingests the cohort when its CSVs change, registers new scans as partitions, and "
    "launches per-scan runs for ingested scans that are not processed yet.",
)
def new_scans_sensor(
    context: dg.SensorEvaluationContext, cohort: CohortResource, settings: SettingsResource, store: StoreResource
):
    cohort_dir = Path(cohort.path)
    fingerprint = cohort_fingerprint(cohort_dir)
    run_requests, partition_requests = [], []
    if fingerprint != context.cursor:
        try:
            study = settings.settings()
            loaded = load_cohort(cohort_dir, study.inclusion, study.label)
        except CohortError as exc:
            return dg.SkipReason(f"cohort not readable: {exc.message}")
        known = set(context.instance.get_dynamic_partitions(scan_partitions.name))
        new = sorted(set(loaded.included_scan_ids) - known)
        if new:
            partition_requests.append(scan_partitions.build_add_request(new))
        run_requests.append(dg.RunRequest(run_key=f"cohort-{fingerprint}", job_name=ingest_cohort_job.name))
        context.update_cursor(fingerprint)
    for scan_id in scans_awaiting_processing(context.instance, store, context.repository_def):
        run_requests.append(
            dg.RunRequest(
                run_key=f"scan-{scan_id}-{fingerprint}", job_name=process_scan_job.name, partition_key=scan_id
            )
        )
    if not run_requests and not partition_requests:
        return dg.SkipReason(f"{cohort_dir} unchanged and every ingested scan processed")
    return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=partition_requests)


@dg.schedule(
    job=process_scan_job,
    cron_schedule="0 2 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night, process every ingested scan that is still missing a per-scan asset "
    "(new scans, and scans whose earlier run failed).",
)
def nightly_catch_up(context: dg.ScheduleEvaluationContext, store: StoreResource):
    night = time.strftime("%Y-%m-%d", time.gmtime(context.scheduled_execution_time.timestamp()))
    missing = scans_awaiting_processing(context.instance, store, context.repository_def)
    if not missing:
        return dg.SkipReason("every ingested scan is processed")
    return [dg.RunRequest(run_key=f"nightly-{night}-{scan_id}", partition_key=scan_id) for scan_id in missing]
