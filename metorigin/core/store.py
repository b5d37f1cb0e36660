"""The embedded feature store: a Parquet lake, an artefacts folder and a DuckDB file, in one folder.

Writes are atomic (temp file + rename) so a killed run leaves the old file or the new one, never
half of one. The pipeline writes its DuckDB database in a private working copy under `.build/` and
publishes it by atomic rename: an analyst holding the published file open (DuckDB CLI, a notebook,
`metorigin sql`) keeps reading a consistent snapshot and never blocks or breaks a run.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd

from metorigin.core.files import atomic_path
from metorigin.core.ids import inside

UNPARTITIONED = "all"
DUCKDB_FILE = "feature_store.duckdb"

# How analysts and the study assets open the published file: read-only, and no access to anything
# outside it (no other file read or written, no ATTACH of another database, no extension INSTALL or
# LOAD, no COPY or EXPORT), locked so that no `SET` re-enables it. The published file holds tables
# only (sql/dbt_project.yml), so nothing it holds needs a file. No temporary directory: DuckDB
# would otherwise allow writes to `<store>/feature_store.duckdb.tmp/` (e.g. EXPORT DATABASE there);
# a query larger than memory fails instead of spilling. One user agent for every reader
# (dagster-duckdb sets its own otherwise): DuckDB shares an open file only between connections of
# the same configuration.
READ_ONLY_CONFIG = {
    "access_mode": "READ_ONLY",
    "custom_user_agent": "metorigin",
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "temp_directory": "",
    "lock_configuration": True,
}


class StoreLockTimeout(RuntimeError):
    """Another writer kept the feature store locked longer than we were willing to wait."""


class Store:
    """Paths and atomic writers for one store folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root).absolute()

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def duckdb_path(self) -> Path:
        """The published, read-only snapshot that analysts query."""
        return self.root / DUCKDB_FILE

    @property
    def build_path(self) -> Path:
        """The pipeline's private working copy; nobody else opens it."""
        return self.root / ".build" / DUCKDB_FILE

    def lake_file(self, asset: str, partition: str | None = None) -> Path:
        """`lake/<asset>/<partition>.parquet`; a partition (a scan id) that would leave the lake is refused."""
        return inside(self.lake, asset, f"{partition or UNPARTITIONED}.parquet")

    def write_lake(self, asset: str, frame: pd.DataFrame, partition: str | None = None) -> Path:
        path = self.lake_file(asset, partition)
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
        return path

    def artifact_path(self, kind: str, name: str) -> Path:
        return inside(self.artifacts, kind, name)

    def relative(self, path: Path) -> str:
        """A path inside the store as stored in its tables: relative to the root (POSIX), so a store
        copied or moved elsewhere still finds its files (`root / value`)."""
        return Path(path).absolute().relative_to(self.root.absolute()).as_posix()

    def write_image(self, image, kind: str, name: str) -> Path:
        """Atomic write of a SimpleITK image artefact (e.g. a label map) under artifacts/<kind>/."""
        import SimpleITK as sitk

        path = self.artifact_path(kind, name)
        with atomic_path(path, keep_suffix=True) as tmp:
            sitk.WriteImage(image, str(tmp), useCompression=True)
        return path

    def lake_partitions(self, asset: str) -> list[str]:
        folder = self.lake / asset
        return sorted(p.stem for p in folder.glob("*.parquet")) if folder.is_dir() else []

    def read_lake(self, asset: str, partitions: list[str] | None = None) -> pd.DataFrame:
        """One asset's rows: the given partitions, or every partition stored."""
        keys = self.lake_partitions(asset) if partitions is None else partitions
        missing = [k for k in keys if not self.lake_file(asset, k).is_file()]
        if missing or not keys:
            raise FileNotFoundError(
                f"{asset} has not been materialised in {self.lake} "
                f"(missing: {', '.join(missing) or 'all partitions'}); run it first"
            )
        frames = [pd.read_parquet(self.lake_file(asset, k)) for k in keys]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    @contextmanager
    def build_lock(self, holder: str, timeout_s: float = 600.0) -> Iterator[Path]:
        """Exclusive use of the working copy (for DuckDB connections or a dbt build); published when
        the block succeeds, reset to the published snapshot when it fails.

        A file lock serialises writers across processes even where no Dagster pool applies
        (ephemeral instances, scripts). A writer that waits too long is told who holds the lock.
        A holder killed mid-build (`kill -9`: no `except` runs) leaves its marker behind, and the
        next holder starts from the published snapshot: the killed build's half-built tables are
        never published with a later build's.
        """
        self.build_path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.build_path.with_suffix(".lock")
        with open(lock_path, "a+") as lock:
            _acquire(lock, lock_path, timeout_s)
            try:
                lock.seek(0)
                lock.truncate()
                lock.write(f"{holder} (pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
                lock.flush()
                unfinished = self.build_path.with_suffix(".unfinished")
                if unfinished.exists():  # its last holder was killed mid-build: nothing of that build is kept
                    self._reset_build()
                elif not self.build_path.exists() and self.duckdb_path.exists():
                    shutil.copy2(self.duckdb_path, self.build_path)  # e.g. the .build folder was deleted
                unfinished.write_text(holder + "\n")
                try:
                    yield self.build_path
                except BaseException:
                    self._reset_build()  # half-built tables must not reach the next publication
                    unfinished.unlink()
                    raise
                self._publish()
                unfinished.unlink()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _reset_build(self) -> None:
        for suffix in ("", ".wal"):
            Path(f"{self.build_path}{suffix}").unlink(missing_ok=True)
        if self.duckdb_path.exists():
            shutil.copy2(self.duckdb_path, self.build_path)

    def _publish(self) -> None:
        with atomic_path(self.duckdb_path) as tmp:
            shutil.copy2(self.build_path, tmp)

    def connect_read_only(self) -> duckdb.DuckDBPyConnection:
        """The published snapshot, read-only and without file access (`READ_ONLY_CONFIG`)."""
        if not self.duckdb_path.exists():
            raise FileNotFoundError(f"no feature store at {self.duckdb_path}; run `metorigin run` first")
        return duckdb.connect(str(self.duckdb_path), read_only=True, config=dict(READ_ONLY_CONFIG))


def _acquire(lock, lock_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock.seek(0)
                holder = lock.read().strip() or "an unknown process"
                raise StoreLockTimeout(
                    f"the feature store {lock_path.parent.parent} is locked by {holder}; "
                    "wait for that run to finish or stop it"
                ) from None
            time.sleep(0.2)
