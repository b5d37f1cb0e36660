"""The sensor and the schedule that keep the store in step with the cohort folder.

The cohort folder is outside Dagster, so a sensor watches it: on most ticks it reads the two CSVs
and stats the files they list (size and modification time); their hash is the cursor, so ingest
(the header validation of every image) runs only when the cohort changed. Both the sensor and the
nightly schedule then ask for per-scan runs of exactly the scans whose assets are stale or missing
(a new scan, or one whose row or files changed), each keyed by the version of its inputs, so a scan
is launched once per change, never again for the same inputs. The feature store and the study
follow by automation (automation.py).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES

from assets.cohort import load_cohort
from base.errors import CohortError
from base.lifecycle import read_retired_log, scans_with_results

from .automation import SENSOR_INTERVAL_S
from .cohort_assets import COHORT_FINGERPRINT, DATA_VERSION_TAG, cohort_fingerprint, scan_inputs
from .jobs import ingest_cohort_job, process_scan_job
from .partitions import included_scan_partitions, scan_partitions
from .resources import CohortResource, SettingsResource, StoreResource
from .scan_assets import per_scan_keys
from .staleness import StaleStatus, stale_closure, status_resolver

SCAN_INTEGRITY = dg.AssetKey("scan_integrity")


def _last_ingested(instance: dg.DagsterInstance) -> str | None:
    """The cohort fingerprint the latest ingest recorded on `scans`."""
    event = instance.get_latest_materialization_event(dg.AssetKey("scans"))
    entry = event.asset_materialization if event else None
    value = entry.metadata.get(COHORT_FINGERPRINT) if entry else None
    return value.value if value else None


@dataclass(frozen=True)
class AwaitingScan:
    """A scan to process: what to run, and a key that changes with its inputs, the code, and each
    return to the cohort (a scan whose results were retired and which came back is a new request).
    A failed run is not requested again until one of them changes (or by the nightly schedule)."""

    scan_id: str
    assets: list[dg.AssetKey]
    key: str


def scans_awaiting_processing(
    instance: dg.DagsterInstance, store: StoreResource, repository: dg.RepositoryDefinition
) -> list[AwaitingScan]:
    """Included, registered scans with a stale or missing per-scan asset, or without results in the
    lake, each with its stale assets (and `scan_integrity`, whose blocking check gates them)."""
    graph = repository.asset_graph
    per_scan = per_scan_keys(graph)
    code = hashlib.sha256(str(sorted((k.to_user_string(), graph.get(k).code_version) for k in per_scan)).encode())
    present = scans_with_results(store.store())
    retirements = Counter(line.get("scan_id") for line in read_retired_log(store.store()))
    in_flight = {
        record.dagster_run.tags.get("dagster/partition")
        for record in instance.get_run_records(
            dg.RunsFilter(job_name=process_scan_job.name, statuses=NOT_FINISHED_STATUSES)
        )
    }
    waiting, resolver = [], status_resolver(instance, graph)
    for scan_id in included_scan_partitions(instance, store.store()):
        if scan_id in in_flight:
            continue  # its run is queued or running
        stale = per_scan if scan_id not in present else stale_closure(instance, graph, per_scan, scan_id, resolver)
        if not stale:
            continue
        inputs = instance.get_latest_data_version_record(scan_inputs.key, is_source=True, partition_key=scan_id)
        key = "-".join(
            [
                f"scan-{scan_id}",
                (inputs.event_log_entry.tags or {}).get(DATA_VERSION_TAG, "none") if inputs else "none",
                code.hexdigest()[:12],
                str(retirements[scan_id]),  # back in the cohort after its results were retired: a new request
            ]
        )
        # Integrity first when only its inputs moved on a processed scan (as `metorigin run` does):
        # a file with new times and the same bytes keeps its data version, and nothing after it runs.
        missing = any(resolver.get_status(k, scan_id) == StaleStatus.MISSING for k in per_scan)
        first = SCAN_INTEGRITY in stale and scan_id in present and not missing
        assets = [SCAN_INTEGRITY] if first else sorted(stale | {SCAN_INTEGRITY}, key=str)
        waiting.append(AwaitingScan(scan_id, assets, key + ("-check" if first else "")))
    return waiting


def _ingest_in_flight(instance: dg.DagsterInstance) -> bool:
    """An ingest is queued or running: the scans table and the scans' input versions are changing."""
    running = instance.get_run_records(dg.RunsFilter(job_name=ingest_cohort_job.name, statuses=NOT_FINISHED_STATUSES))
    return bool(running)


@dg.sensor(
    jobs=[ingest_cohort_job, process_scan_job],
    minimum_interval_seconds=SENSOR_INTERVAL_S,
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
    if context.cursor is None and fingerprint == _last_ingested(context.instance):
        context.update_cursor(fingerprint)  # e.g. `metorigin run` ingested this cohort before the UI started
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
    if not run_requests and not _ingest_in_flight(context.instance):  # after the ingest, not during it
        for scan in scans_awaiting_processing(context.instance, store, context.repository_def):
            run_requests.append(
                dg.RunRequest(
                    run_key=scan.key,
                    job_name=process_scan_job.name,
                    partition_key=scan.scan_id,
                    asset_selection=scan.assets,
                )
            )
    if not run_requests and not partition_requests:
        return dg.SkipReason(f"{cohort_dir} unchanged and every ingested scan processed")
    return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=partition_requests)


@dg.schedule(
    job=process_scan_job,
    cron_schedule="0 2 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night, process every ingested scan with a stale or missing per-scan asset "
    "(new or changed scans, and scans whose earlier run failed).",
)
def nightly_catch_up(context: dg.ScheduleEvaluationContext, store: StoreResource):
    night = time.strftime("%Y-%m-%d", time.gmtime(context.scheduled_execution_time.timestamp()))
    waiting = scans_awaiting_processing(context.instance, store, context.repository_def)
    if not waiting:
        return dg.SkipReason("every ingested scan is processed and current")
    return [
        dg.RunRequest(
            run_key=f"nightly-{night}-{scan.scan_id}", partition_key=scan.scan_id, asset_selection=scan.assets
        )
        for scan in waiting
    ]
