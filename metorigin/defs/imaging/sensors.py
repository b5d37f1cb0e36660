"""The sensor and the schedule that keep the store in step with the cohort folder.

The cohort folder is outside Dagster, so a sensor watches it: on most ticks it reads the two CSVs
and stats the files they list (size and modification time); their hash is the cursor, so ingest
(the header validation of every image) runs only when the cohort changed. Both the sensor and the
nightly schedule then launch `process_scans` runs (scan_batches.py) for exactly the scans whose
assets are stale or missing (a new scan, or one whose row or files changed); the sensor asks once
per version of a scan's inputs, never again for the same inputs. Which scans are fresh is read
from metorigin.defs.common.names import COHORT_FINGERPRINT, REQUEST_TAG
from the event log in batches (`staleness.fresh_partitions`: ~5 s for 10,000 scans, where asking
Dagster's resolver scan by scan takes ~15 minutes); after its first look the sensor asks only about
scans with new events since (`Look`); the nightly schedule asks about all of them, which also catches
a scan whose batch died before reaching it. The feature store and the study follow by automation
(automation.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import dagster as dg

from metorigin.core.config import SENSOR_INTERVAL_S
from metorigin.core.errors import CohortError
from metorigin.core.forgetting import forgotten_patients
from metorigin.defs.common.names import COHORT_FINGERPRINT, NOT_FINISHED_STATUSES, REQUEST_TAG
from metorigin.defs.common.partitions import scan_partitions
from metorigin.defs.common.resources import CohortResource, SettingsResource, StoreResource
from metorigin.defs.jobs import ingest_cohort_job, process_scan_job, process_scans_job
from metorigin.imaging.cohort import load_cohort
from metorigin.imaging.fingerprints import cohort_fingerprint
from metorigin.runtime.batches import (
    AwaitingScan,
    batch_requests,
    per_scan_code_version,
    promotions_version,
    scans_awaiting_processing,
    scans_in_flight,
    scans_with_events_after,
)
from metorigin.runtime.dead_runs import release as release_dead_runs


def _last_ingested(instance: dg.DagsterInstance) -> str | None:
    """The cohort fingerprint the latest ingest recorded on `scans`."""
    event = instance.get_latest_materialization_event(dg.AssetKey("scans"))
    entry = event.asset_materialization if event else None
    value = entry.metadata.get(COHORT_FINGERPRINT) if entry else None
    return value.value if value else None


def _not_requested_yet(instance: dg.DagsterInstance, scan: AwaitingScan) -> bool:
    """No run was made yet for the scan as it is now (a failed one is not retried every tick, only
    when its inputs or the code change, or by the nightly schedule)."""
    return not instance.get_run_ids(dg.RunsFilter(tags={REQUEST_TAG: scan.key}), limit=1)


def _ingest_in_flight(instance: dg.DagsterInstance) -> bool:
    """An ingest is queued or running: the scans table and the scans' input versions are changing."""
    running = instance.get_run_records(dg.RunsFilter(job_name=ingest_cohort_job.name, statuses=NOT_FINISHED_STATUSES))
    return bool(running)


@dataclass(frozen=True)
class Look:
    """The cohort sensor's cursor: the cohort it last ingested, and how far it read the event log
    under which per-scan code version (so a tick asks about the scans that changed since, not all)."""

    cohort: str | None = None
    events: int | None = None
    code: str | None = None
    promotions: str | None = None  # the promoted set's data version the scans were last asked about under

    @classmethod
    def parse(cls, cursor: str | None) -> "Look":
        if not cursor:
            return cls()
        try:
            return cls(**json.loads(cursor))
        except (ValueError, TypeError):
            return cls(cohort=cursor)  # a cursor written before it held more than the cohort

    def dump(self) -> str:
        return json.dumps(asdict(self))


# `process_scan` is among the targets because each `process_scans` run runs it once per scan: the
# per-scan assets' Automation panel names this sensor.
@dg.sensor(
    jobs=[ingest_cohort_job, process_scans_job, process_scan_job],
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Ingests the cohort when its CSVs change, registers new scans as partitions, and "
    "launches process_scans runs (one process_scan run per scan inside) for ingested scans that are not "
    "processed yet.",
)
def new_scans_sensor(
    context: dg.SensorEvaluationContext, cohort: CohortResource, settings: SettingsResource, store: StoreResource
):
    for line in release_dead_runs(context.instance, "the cohort sensor"):  # a killed run holds no scan
        context.log.warning(line)
    cohort_dir = Path(cohort.path)
    fingerprint = cohort_fingerprint(cohort_dir)
    look = Look.parse(context.cursor)
    if look.cohort is None and fingerprint == _last_ingested(context.instance):
        look = replace(look, cohort=fingerprint)  # e.g. `metorigin run` ingested this cohort before the UI started
    run_requests, partition_requests = [], []
    if fingerprint != look.cohort:
        try:
            study = settings.settings()
            gone, limit = forgotten_patients(store.store()), study.cluster.read_timeout_s
            loaded = load_cohort(cohort_dir, study.inclusion, study.label, gone, limit)
        except CohortError as exc:
            return dg.SkipReason(f"cohort not readable: {exc.message}")
        known = set(context.instance.get_dynamic_partitions(scan_partitions.name))
        new = sorted(set(loaded.included_scan_ids) - known)
        if new:
            partition_requests.append(scan_partitions.build_add_request(new))
        run_requests.append(dg.RunRequest(run_key=f"cohort-{fingerprint}", job_name=ingest_cohort_job.name))
        look = replace(look, cohort=fingerprint)
    in_flight = scans_in_flight(context.instance)  # None: a run will process every stale scan
    if not run_requests and in_flight is not None and not _ingest_in_flight(context.instance):  # after ingest
        graph = context.repository_def.asset_graph
        code = per_scan_code_version(graph)
        changed, newest = scans_with_events_after(context.instance, graph, look.events or 0)
        promoted = promotions_version(context.instance)
        # The first look, new code or another promoted set (every scan's predictions): every scan;
        # then only those with new events since the last look. (Ingest re-materialises the
        # promotions each time; only a new data version, another promoted set, counts.)
        everything = look.events is None or look.code != code or look.promotions != promoted
        candidates = None if everything else changed
        waiting = [
            scan
            for scan in scans_awaiting_processing(
                context.instance, store, context.repository_def, only=candidates, skip=in_flight
            )
            if _not_requested_yet(context.instance, scan)
        ]
        run_requests += batch_requests(waiting)
        look = replace(look, events=newest, code=code, promotions=promoted)
    context.update_cursor(look.dump())
    if not run_requests and not partition_requests:
        return dg.SkipReason(f"{cohort_dir} unchanged and no ingested scan waiting")
    return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=partition_requests)


@dg.schedule(
    job=process_scans_job,
    cron_schedule="0 2 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night, process every ingested scan with a stale or missing per-scan asset "
    "(new or changed scans, and scans whose earlier run failed).",
)
def nightly_catch_up(context: dg.ScheduleEvaluationContext, store: StoreResource):
    night = time.strftime("%Y-%m-%d", time.gmtime(context.scheduled_execution_time.timestamp()))
    in_flight = scans_in_flight(context.instance)
    if in_flight is None:
        return dg.SkipReason("a process_scans run of every stale scan is queued or running")
    waiting = scans_awaiting_processing(context.instance, store, context.repository_def, skip=in_flight)
    if not waiting:
        return dg.SkipReason("every ingested scan is processed and current, or held by a queued or running run")
    return batch_requests(waiting, run_key=f"nightly-{night}")
