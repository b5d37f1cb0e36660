"""Which assets are stale or missing, as the UI shows them: Dagster's own resolver (code versions,
data versions, partitions), so `metorigin run` skips exactly what the UI calls fresh.

The resolver is not in Dagster's public API (the UI and `RunRequest(stale_assets_only=True)` use
it); this module is the one place that touches it.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._time import get_current_datetime

SCAN_INTEGRITY = dg.AssetKey("scan_integrity")

__all__ = ["StaleStatus", "feature_store_is_stale", "latest_storage_id", "stale_closure", "status_resolver"]


def status_resolver(instance: dg.DagsterInstance, graph) -> CachingStaleStatusResolver:
    """A resolver for now: it caches, so make a new one after each run."""
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
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
