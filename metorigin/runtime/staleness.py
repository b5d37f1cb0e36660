"""Which assets are stale or missing, as the UI shows them: Dagster's own resolver (code versions,
data versions, partitions), so `metorigin run` skips exactly what the UI calls fresh.

The resolver is not in Dagster's public API (the UI and `RunRequest(stale_assets_only=True)` use
it); this module is the one place that touches it. It asks the event log ~2 queries per asset and
partition: at 10,000 scans, 15 minutes a sensor tick. `settled_partitions` reads the same events in
batches and applies the resolver's rules: what they prove fresh or stale is settled in seconds, the
rest is left to the resolver.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timezone
from functools import lru_cache
from typing import NamedTuple

import dagster as dg
import sqlalchemy as sa

from metorigin.defs.common.names import SCAN_INTEGRITY
from metorigin.runtime.dagster_internals import (
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    DEFAULT_DATA_VERSION,
    INPUT_DATA_VERSION_TAG_PREFIX,
    INPUT_EVENT_POINTER_TAG_PREFIX,
    NULL_DATA_VERSION,
    NULL_EVENT_POINTER,
    AssetGraphView,
    CachingStaleStatusResolver,
    IdentityPartitionMapping,
    SqlEventLogStorage,
    StaleStatus,
    TemporalContext,
    extract_data_version_from_entry,
)
from metorigin.runtime.dagster_internals import SqlEventLogStorageTable as EVENTS

__all__ = [
    "StaleStatus",
    "feature_store_is_stale",
    "fresh_partitions",
    "latest_data_versions",
    "settled_partitions",
    "latest_storage_id",
    "stale_closure",
    "status_resolver",
]
RECORDS_PER_QUERY = 1000
UNREAD = object()  # the data version of an event whose stored JSON is not in the expected shape


def status_resolver(instance: dg.DagsterInstance, graph) -> CachingStaleStatusResolver:
    """A resolver for now: it caches, so make a new one after each run."""
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=datetime.now(timezone.utc), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    return CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)


def stale_closure(instance: dg.DagsterInstance, graph, keys: set, partition: str | None = None, resolver=None) -> set:
    """The keys that are not fresh, and every key among `keys` downstream of one of them, with the
    other outputs of a multi-asset that cannot run one output alone (one output's code version
    bumped leaves its siblings fresh, and Dagster refuses the subset). Pass one `resolver` to ask
    about many partitions at the same moment (it caches what it reads)."""
    resolver = resolver or status_resolver(instance, graph)
    stale = {k for k in keys if resolver.get_status(k, partition) != StaleStatus.FRESH}
    if not stale:
        return set()
    closure = dg.AssetSelection.assets(*stale).required_multi_asset_neighbors().downstream()
    return closure.required_multi_asset_neighbors().resolve(graph) & keys


def fresh_partitions(instance: dg.DagsterInstance, graph, keys: set, partitions: Iterable[str]) -> set[str]:
    """The partitions among `partitions` in which each of `keys` is certainly FRESH (`settled_partitions`)."""
    return settled_partitions(instance, graph, keys, partitions)[0]


def settled_partitions(
    instance: dg.DagsterInstance, graph, keys: set, partitions: Iterable[str]
) -> tuple[set[str], set[str]]:
    """(fresh, stale): the partitions among `partitions` in which each of `keys` is certainly FRESH,
    and those in which one of them certainly is not (missing, or stale by the rules below), read
    from the latest event of each asset and partition in batches (a query per asset, and one per
    1,000 events): seconds for 10,000 scans, where asking the resolver scan by scan takes minutes.

    The resolver's rules for a materialised partition: the code version it was made with is the
    asset's; it read every input the asset has and no other; each unpartitioned input's data version
    is still the one it read; and each partitioned input (the same partition of an asset with the
    same partitions) has no event after the one it read, or its latest has that event's data version.
    A partition these events cannot settle (an event without provenance, another partition mapping,
    a view among the assets) is in neither set: ask `stale_closure` about it.
    tests/test_dagster_imaging.py and tests/test_run_machinery.py hold its answers to the resolver's."""
    wanted = set(partitions)
    first = graph.get(next(iter(keys))).partitions_def if keys else None
    partitioned = {p for k in keys for p in graph.get(k).parent_keys if graph.get(p).is_partitioned}
    if not wanted or first is None or any(graph.get(k).partitions_def != first for k in keys | partitioned):
        return set(), set()
    if any(graph.get(p).is_virtual for k in keys for p in [k, *graph.get(k).parent_keys]):
        return set(), set()  # the resolver follows views to their ancestors: not done here
    if any(graph.get(k).is_external for k in keys):
        return set(), set()  # an observed asset is never stale by these rules: not settled here
    if any(
        not isinstance(graph.get_partition_mapping(k, p), IdentityPartitionMapping)
        for k in keys
        for p in graph.get(k).parent_keys
        if p in partitioned
    ):
        return set(), set()
    latest = {key: _latest_events(instance, graph, key, wanted) for key in keys | partitioned}
    current = {
        p: _current_version(instance, graph, p) for k in keys for p in graph.get(k).parent_keys if p not in partitioned
    }
    fresh, stale = set(), set()
    for partition in wanted:
        reads = [_reads_if_current(graph, key, partition, latest, current) for key in keys]
        if any(r is STALE for r in reads):
            stale.add(partition)
        elif all(r is not None for r in reads):
            same = {_same_as_read(instance, graph, partition, *read) for found in reads for read in found}
            if same <= {True}:
                fresh.add(partition)
            elif False in same:
                stale.add(partition)
    return fresh, stale


STALE = object()  # `_reads_if_current`: the events say the asset's partition is missing or stale
OLD_INPUT_TAG_PREFIX = "dagster/input_logical_version"  # what Dagster before 1.3 wrote for an input


def _same_as_read(instance: dg.DagsterInstance, graph, partition: str, parent, pointer: int, now) -> bool | None:
    """The resolver's own comparison for an input with an event after the one read: the partition's
    latest event at or before the pointer (after any wipe; the pointer may name another partition's
    event) against the latest (None: no such event, not settled here). Few pairs: an input re-made
    without what reads it."""
    record = instance.get_latest_data_version_record(
        parent, is_source=graph.get(parent).is_external, partition_key=partition, before_cursor=pointer + 1
    )
    then = extract_data_version_from_entry(record.event_log_entry) if record else None
    return None if then is None else then == now


def _latest_events(instance: dg.DagsterInstance, graph, key, partitions: set[str]) -> dict:
    """partition -> (storage id, data version, provenance) of the asset's latest event there."""
    external = graph.get(key).is_external
    kind = dg.DagsterEventType.ASSET_OBSERVATION if external else dg.DagsterEventType.ASSET_MATERIALIZATION
    ids = {i: p for p, i in instance.event_log_storage.get_latest_storage_id_by_partition(key, kind).items()}
    tags = _event_tags(instance, graph, key, [i for i, p in ids.items() if p in partitions])
    return {
        ids[i]: (i, _data_version(found), _Read.from_tags(found)) if found is not None else (i, UNREAD, None)
        for i, (_, found) in tags.items()
    }


def latest_data_versions(instance: dg.DagsterInstance, graph, key, partitions: Iterable[str]) -> dict:
    """partition -> the data version of the asset's latest event there (None: none, or unreadable),
    read in batches as `settled_partitions` reads them (one query a partition took 30 s at 10,000)."""
    wanted = set(partitions)
    latest = _latest_events(instance, graph, key, wanted) if wanted else {}
    return {p: (latest[p][1] if p in latest and latest[p][1] is not UNREAD else None) for p in wanted}


def _data_version(tags: dict | None) -> dg.DataVersion | None:
    value = (tags or {}).get(DATA_VERSION_TAG)
    return dg.DataVersion(value) if value else None


def _event_tags(instance: dg.DagsterInstance, graph, key, storage_ids: list[int]) -> dict:
    """storage id -> (partition, tags) of each of the asset's events, `RECORDS_PER_QUERY` to a query.

    From a SQL event log (SQLite, Postgres) the stored JSON is read as plain JSON: Dagster's own
    deserialisation of an event costs ~0.3 ms, 20 s for the 70,000 events of 10,000 scans, several
    times this. An event not in the expected shape gets tags None (not settled here: the resolver's)."""
    ids, found = sorted(storage_ids), {}
    storage = instance.event_log_storage
    for start in range(0, len(ids), RECORDS_PER_QUERY):
        chunk = ids[start : start + RECORDS_PER_QUERY]
        if isinstance(storage, SqlEventLogStorage):
            query = sa.select(EVENTS.c.id, EVENTS.c.event).where(EVENTS.c.id.in_(chunk))
            with storage.index_connection() as connection:
                found |= {i: _partition_and_tags(text) for i, text in connection.execute(query).fetchall()}
        else:
            fetch = instance.fetch_observations if graph.get(key).is_external else instance.fetch_materializations
            records = fetch(dg.AssetRecordsFilter(asset_key=key, storage_ids=chunk), limit=len(chunk)).records
            found |= {r.storage_id: (r.partition_key, dict(r.event_log_entry.tags or {})) for r in records}
    return found


def _partition_and_tags(text: str) -> tuple[str | None, dict | None]:
    try:
        data = json.loads(text)["dagster_event"]["event_specific_data"]
        event = data.get("materialization") or data.get("asset_observation")
        return event["partition"], dict(event["tags"] or {})
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, None


def _current_version(instance: dg.DagsterInstance, graph, key) -> dg.DataVersion:
    """An unpartitioned asset's data version now, as the resolver takes it."""
    record = instance.get_latest_data_version_record(key, is_source=graph.get(key).is_external)
    if record is None:
        return DEFAULT_DATA_VERSION if graph.get(key).is_external else NULL_DATA_VERSION
    return extract_data_version_from_entry(record.event_log_entry) or DEFAULT_DATA_VERSION


class _Read(NamedTuple):
    """How a materialisation was made, as Dagster's `DataProvenance.from_tags` reads its tags, with
    each tag's asset key parsed once rather than once per event (half the time at 10,000 scans).
    Tags of Dagster before 1.3 (`input_logical_version`) are not read here: unsettled, the resolver's."""

    code_version: str
    versions: dict  # input -> the data version it read
    pointers: dict  # input -> the storage id of the event it read (None: none)

    @classmethod
    def from_tags(cls, tags: dict) -> "_Read | None":
        if tags.get(CODE_VERSION_TAG) is None or any(t.startswith(OLD_INPUT_TAG_PREFIX) for t in tags):
            return None
        versions, pointers = {}, {}
        for tag, value in tags.items():
            kind, key = _input_tag(tag)
            if kind == INPUT_DATA_VERSION_TAG_PREFIX:
                versions[key] = dg.DataVersion(value)
            elif kind == INPUT_EVENT_POINTER_TAG_PREFIX:
                pointers[key] = int(value) if value != NULL_EVENT_POINTER else None
        return cls(tags[CODE_VERSION_TAG], versions, pointers)


@lru_cache(maxsize=4096)
def _input_tag(tag: str) -> tuple[str | None, dg.AssetKey | None]:
    for prefix in (INPUT_DATA_VERSION_TAG_PREFIX, INPUT_EVENT_POINTER_TAG_PREFIX):
        if tag.startswith(prefix + "/"):
            return prefix, dg.AssetKey.from_user_string(tag[len(prefix) + 1 :])
    return None, None


def _reads_if_current(graph, key, partition: str, latest: dict, current: dict):
    """STALE when the asset's partition is missing or stale by the rules above, None when they cannot
    settle it; else the partitioned inputs with an event after the one it read: (input, event read,
    latest version), whose versions must be equal for it to be fresh (the resolver compares those
    two events)."""
    event = latest[key].get(partition)
    if event is None:
        return STALE  # never materialised: MISSING
    read: _Read | None = event[2]
    node = graph.get(key)
    if read is None:
        return None  # an event without provenance, or not in the expected shape
    if node.code_version and node.code_version != read.code_version:
        return STALE
    if set(read.versions) != set(node.parent_keys) or not set(node.parent_keys) <= set(read.pointers):
        return STALE  # an input removed or added since
    reads = []
    for parent in node.parent_keys:
        if parent in current:
            then, now = read.versions[parent], current[parent]
            if then != now and not (then == DEFAULT_DATA_VERSION and now == NULL_DATA_VERSION):
                return STALE
            continue
        pointer, newer = read.pointers[parent], latest[parent].get(partition)
        if newer is not None and newer[1] is UNREAD:
            return None  # the input's latest event could not be read here
        if pointer is not None and newer is not None and newer[0] > pointer:
            reads.append((parent, pointer, newer[1]))
    return reads


def latest_storage_id(instance: dg.DagsterInstance, keys) -> int:
    """The event-log id of the newest materialisation of any of `keys` (0: none)."""
    ids = [
        records[0].storage_id
        for key in keys
        if (records := instance.fetch_materializations(key, limit=1, ascending=False).records)
    ]
    return max(ids, default=0)


def feature_store_is_stale(instance: dg.DagsterInstance, graph, models: set, per_scan: set) -> bool:
    """Dagster's staleness of the dbt models, or a scan's results computed since the last build: past
    100 partitions Dagster stops following each scan, and a scan's steps run only when it changed.
    (`scan_integrity` alone also re-checks a file whose time changed and whose bytes did not.)"""
    if stale_closure(instance, graph, models):
        return True
    results = {key for key in per_scan if key != SCAN_INTEGRITY}
    return latest_storage_id(instance, results) > latest_storage_id(instance, models)


def job_asset_keys(repository: dg.RepositoryDefinition, job_name: str) -> set:
    """The assets a named job materialises."""
    return set(repository.get_job(job_name).asset_layer.executable_asset_keys)
