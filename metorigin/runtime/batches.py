"""Which scans await processing, and processing them several to a run.

A run the daemon launches is a new process: it imports the stack and loads the definitions (~4 s)
before its first step, and its first scan pays for the imaging libraries' first use (~2 s). For a
scan that is ~2 s of work, one run per scan cost the daemon three to four times what
`metorigin run` spends per scan. So the sensor and the nightly schedule launch `process_scans` runs:
each runs the `process_scan` job in its own process for every scan of its batch, exactly as
`metorigin run` does. Every scan still gets its own `process_scan` run (its partition, its logs,
a failure that is its own), tagged with the batch run that made it.
"""

import hashlib
from collections import Counter
from dataclasses import dataclass

import dagster as dg

from metorigin.core.config import SCANS_PER_RUN
from metorigin.core.lifecycle import read_retired_log, scans_with_results
from metorigin.defs.common.names import (
    BATCH_OP,
    DATA_VERSION_TAG,
    NOT_FINISHED_STATUSES,
    PROCESS_SCAN_JOB,
    PROCESS_SCANS_JOB,
    PROMOTIONS,
    SCAN_INPUTS,
    per_scan_keys,
)
from metorigin.defs.common.partitions import included_scan_partitions
from metorigin.defs.common.resources import StoreResource
from metorigin.runtime.staleness import latest_data_versions, settled_partitions, stale_closure, status_resolver

# Scans per `process_scans` run: long enough to spread a run's start over many scans, short enough
# that two runs (dagster.yaml admits two at a time) share a big batch and a failure shows early.


@dataclass(frozen=True)
class AwaitingScan:
    """A scan to process, and a key that changes with its inputs, the code, and each return to the
    cohort (a scan whose results were retired and which came back is a new request)."""

    scan_id: str
    key: str


def per_scan_code_version(graph) -> str:
    """One hash of the per-scan assets' code versions: when it changes, every scan may be stale."""
    versions = sorted((k.to_user_string(), graph.get(k).code_version) for k in per_scan_keys(graph))
    return hashlib.sha256(str(versions).encode()).hexdigest()[:12]


def scans_with_events_after(instance: dg.DagsterInstance, graph, after: int) -> tuple[set[str], int]:
    """Scans with a per-scan materialisation or a `scan_inputs` observation logged after the event-log
    id `after`, and the newest id among them (`after` if none): what can have changed which scans are
    stale, so the sensor asks about those alone. One indexed query per asset: no event is read."""
    changed, newest = set(), after
    materialized = dg.DagsterEventType.ASSET_MATERIALIZATION
    kinds = [(key, materialized) for key in sorted(per_scan_keys(graph))]
    for key, kind in [*kinds, (SCAN_INPUTS, dg.DagsterEventType.ASSET_OBSERVATION)]:
        latest = instance.event_log_storage.get_latest_storage_id_by_partition(key, kind, after_cursor=after)
        changed |= set(latest)
        newest = max([newest, *latest.values()])
    return changed, newest


def scans_awaiting_processing(
    instance: dg.DagsterInstance,
    store: StoreResource,
    repository: dg.RepositoryDefinition,
    only: set[str] | list[str] | None = None,
    skip: set[str] = frozenset(),
    stale_only: bool = True,
) -> list[AwaitingScan]:
    """Included, registered scans (of `only`, when given; not in `skip`) with a stale or missing
    per-scan asset, or without results in the lake (`stale_only=False`: all of them, each with its
    key, for a batch run that checks each scan as it reaches it)."""
    graph = repository.asset_graph
    per_scan = per_scan_keys(graph)
    code = per_scan_code_version(graph)
    present = scans_with_results(store.store())
    retirements = Counter(line.get("scan_id") for line in read_retired_log(store.store()))
    waiting, resolver = [], status_resolver(instance, graph)
    promotions = promotions_version(instance)[:12]
    candidates = [
        scan_id
        for scan_id in included_scan_partitions(instance, store.store())
        if (only is None or scan_id in only) and scan_id not in skip
    ]
    # Settled from the event log in batches; the resolver, scan by scan, only for what they cannot settle.
    processed = [s for s in candidates if s in present]
    fresh, stale = settled_partitions(instance, graph, per_scan, processed) if stale_only else ((), ())
    awaiting = []
    for scan_id in candidates:
        if stale_only and scan_id in present and scan_id not in stale:
            if scan_id in fresh or not stale_closure(instance, graph, per_scan, scan_id, resolver):
                continue
        awaiting.append(scan_id)
    inputs = latest_data_versions(instance, graph, SCAN_INPUTS, awaiting)  # in batches: all of them may be
    for scan_id in awaiting:
        key = "-".join(
            [
                f"scan-{scan_id}",
                inputs[scan_id].value if inputs[scan_id] else "none",
                code,
                promotions,  # another promoted model: its predictions are a new request
                str(retirements[scan_id]),  # back in the cohort after its results were retired: a new request
            ]
        )
        waiting.append(AwaitingScan(scan_id, key))
    return waiting


def promotions_version(instance: dg.DagsterInstance) -> str:
    """The data version of the promoted set (`model_promotions`): what every scan's predictions read."""
    record = instance.get_latest_data_version_record(PROMOTIONS)
    return (record.event_log_entry.tags or {}).get(DATA_VERSION_TAG, "none") if record else "none"


def scans_in_flight(instance: dg.DagsterInstance) -> set[str] | None:
    """Scans a queued or running run will process; None when one will process every stale scan (a
    `process_scans` run launched without a list, e.g. from the UI)."""
    in_flight = set()
    for run in instance.get_runs(dg.RunsFilter(job_name=PROCESS_SCANS_JOB, statuses=NOT_FINISHED_STATUSES)):
        scans = run.run_config.get("ops", {}).get(BATCH_OP, {}).get("config", {}).get("scans")
        if not scans:
            return None
        in_flight |= set(scans)
    for record in instance.get_run_records(dg.RunsFilter(job_name=PROCESS_SCAN_JOB, statuses=NOT_FINISHED_STATUSES)):
        in_flight.add(record.dagster_run.tags.get("dagster/partition"))
    return in_flight


def batch_requests(scans: list[AwaitingScan], run_key: str | None = None) -> list[dg.RunRequest]:
    """`process_scans` runs for the scans, `SCANS_PER_RUN` to a run, each keyed by what it holds
    (or by `run_key` and its number)."""
    requests = []
    for start in range(0, len(scans), SCANS_PER_RUN):
        batch = scans[start : start + SCANS_PER_RUN]
        key = hashlib.sha256(" ".join(s.key for s in batch).encode()).hexdigest()[:16]
        requests.append(
            dg.RunRequest(
                run_key=f"{run_key}-{start // SCANS_PER_RUN + 1}" if run_key else f"scans-{key}",
                job_name=PROCESS_SCANS_JOB,
                run_config={"ops": {BATCH_OP: {"config": {"scans": [s.scan_id for s in batch]}}}},
            )
        )
    return requests
