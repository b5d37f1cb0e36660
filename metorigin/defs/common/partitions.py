"""Per-scan partitions. Dynamic, because cohorts grow: new scans arrive and are added as keys."""

from dagster import DagsterInstance, DynamicPartitionsDefinition

from metorigin.core.store import Store

scan_partitions = DynamicPartitionsDefinition(name="scans")


def included_scan_partitions(instance: DagsterInstance, store: Store) -> list[str]:
    """Registered scan partitions whose scan the stored `scans` table still includes.

    Keys are never deleted (a scan's history stays visible in the UI), so a scan that was later
    excluded or broke is still registered; it is not processed again.
    """
    registered = set(instance.get_dynamic_partitions(scan_partitions.name))
    try:
        scans = store.read_lake("scans")
    except FileNotFoundError:
        return []
    return sorted(registered & set(scans.loc[scans["included"], "scan_id"]))
