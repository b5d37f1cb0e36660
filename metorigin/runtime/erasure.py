"""Erasing a patient from the store's Dagster instance (`metorigin forget`).

Dagster's event log is append-only history: a run's events, its tags and its compute logs can name
a patient's scans (the per-scan runs, and the cohort-wide runs whose logs or observations list
them). Erasure deletes every run that names the patient or one of their scans, whole (Dagster
deletes runs, not single events), their compute logs, the scans' partitions and the cached asset
status, then compacts the instance's SQLite files so the deleted bytes are gone from disk too.
Runs that named no one else's data are the only ones kept; the erasure log says how many went.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import dagster as dg

from metorigin.core.errors import MetoriginError
from metorigin.defs.common.partitions import scan_partitions


class InstanceInUseError(MetoriginError):
    """The instance's files could not be compacted: a server holds them."""


def _refresh_latest_materializations(instance: dg.DagsterInstance, home: Path, names: re.Pattern) -> None:
    """The SQLite event log caches each asset's latest materialisation in its `asset_keys` table, and
    deleting runs leaves that copy in place: where it names the patient, it is set to the latest
    materialisation that remains. (Dagster has no call for it; this is its default storage's schema.)"""
    index = home / "history" / "runs" / "index.db"
    if not index.exists():
        return
    with sqlite3.connect(index) as con:
        for key_text, latest in con.execute("select asset_key, last_materialization from asset_keys").fetchall():
            if latest and names.search(latest.encode()):
                records = instance.fetch_materializations(dg.AssetKey.from_db_string(key_text), limit=1).records
                value = dg.serialize_value(records[0].event_log_entry) if records else None
                con.execute("update asset_keys set last_materialization = ? where asset_key = ?", (value, key_text))


def require_instance_free(home: Path) -> None:
    """Refuse, before anything is erased, an instance a server is writing to: its files could not
    be compacted afterwards (`metorigin ui` on the store must be stopped first)."""
    for database in sorted(home.rglob("*.db")):
        try:
            with sqlite3.connect(database, timeout=10, isolation_level=None) as con:
                con.execute("BEGIN EXCLUSIVE")
                con.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            raise InstanceInUseError(
                f"the Dagster instance {home} is in use ({database.name}: {exc}); nothing was erased. "
                "Fix: stop `metorigin ui` on this store, then run `metorigin forget` again"
            ) from exc


def forget_in_instance(instance: dg.DagsterInstance, home: Path, patient_id: str, scans: list[str]) -> int:
    """Delete what names the patient or their scans; returns how many runs were deleted."""
    # An id only where it stands alone: ids are made of [A-Za-z0-9._-], so `P1` does not match `P12`.
    names = re.compile(
        rb"(?<![A-Za-z0-9._-])("
        + b"|".join(re.escape(n.encode()) for n in (patient_id, *scans))
        + rb")(?![A-Za-z0-9._-])"
    )
    deleted = 0
    for record in instance.get_run_records():
        run = record.dagster_run
        text = dg.serialize_value(run) + "".join(dg.serialize_value(entry) for entry in instance.all_logs(run.run_id))
        if names.search(text.encode()):
            instance.delete_run(run.run_id)
            shutil.rmtree(home / "storage" / run.run_id, ignore_errors=True)  # its compute logs
            deleted += 1
    for scan_id in scans:
        if instance.has_dynamic_partition(scan_partitions.name, scan_id):
            instance.delete_dynamic_partition(scan_partitions.name, scan_id)
    for key in instance.get_asset_keys():
        instance.wipe_asset_cached_status([key])  # partition subsets that list the scans
    _refresh_latest_materializations(instance, home, names)
    instance.dispose()
    for database in sorted(home.rglob("*.db")):
        try:
            with sqlite3.connect(database, timeout=30) as con:
                con.execute("VACUUM")  # the deleted rows' bytes leave the file
        except sqlite3.OperationalError as exc:
            raise InstanceInUseError(
                f"the Dagster instance {home} is in use ({database.name}: {exc}); the patient's runs are deleted "
                "but their bytes are still in its files. Fix: stop `metorigin ui` on this store and run "
                "`metorigin forget` again"
            ) from exc
    return deleted
