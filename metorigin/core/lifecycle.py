"""The store follows the cohort: scans that leave it are retired, and a patient can be forgotten.

Two ways out of the store, and only two:

- `retire_scans`: a scan that left the cohort (its row removed from scans.csv, or now excluded) stops
  being counted, but nothing is deleted: its per-scan lake files and artefacts are moved under
  `retired/<YYYY-MM-DD>/`, mirroring the store's own layout, and each retirement is logged in
  `retired/retired.jsonl`.
- `forget_patient` (forgetting.py): the one deliberate deletion, for a patient whose consent is withdrawn. Every
  trace of the patient goes (lake, artefacts, retired copies, the DuckDB file, including the bytes
  of deleted rows that DuckDB keeps in free blocks), models trained on them are marked for
  retraining, and `erasure_log.jsonl` records what was erased under a hash of the id, never the id.

Retired layout (paths relative to the store root)::

    retired/retired.jsonl                                one JSON line per retired scan
    retired/2024-05-01/lake/<asset>/<scan>.parquet       what was lake/<asset>/<scan>.parquet
    retired/2024-05-01/artifacts/<kind>/<scan>.nii.gz    what was artifacts/<kind>/<scan>.nii.gz
    retired/2024-05-01.2/...                             the same scan retired again that day

A scan's files go to the day's folder unless that folder already holds a file of the same scan;
then to `<date>.2`, `<date>.3`, ...: nothing retired is ever overwritten.

Paths are never built from an id: the files of a scan are found by listing the store's folders and
matching exact names (`S1.parquet`, never `S10.parquet`), so a hostile id cannot reach outside the
store, and every path is checked to stay inside it before anything is moved or deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from metorigin.core.errors import MetoriginError
from metorigin.core.store import UNPARTITIONED, Store

RETIRED = "retired"
RETIRED_LOG = "retired.jsonl"
ARTEFACT_SUFFIXES = (".nii.gz", ".npz", ".png")  # per-scan artefacts: artifacts/<kind>/<scan><suffix>
REPORTS = "report"  # artifacts/report/<run>/: study reports, which show patients' lesions and ids
MODELS = "models"  # artifacts/models holds models and their cards, not per-scan artefacts


# ---------------------------------------------------------------------------------------------
# Finding per-scan files by listing, never by building a path from an id


class ErasureRefused(MetoriginError, ValueError):
    """`forget_patient` was asked to do something that would keep the patient's id (or leave the store)."""


def per_scan_files(base: Path) -> dict[str, list[Path]]:
    """scan id -> its files under `base/lake/<asset>/<scan>.parquet` (not all.parquet) and
    `base/artifacts/<kind>/<scan>.nii.gz|.npz|.png` (not artifacts/models), found by listing."""
    found: dict[str, list[Path]] = {}
    for folder in subfolders(base / "lake"):
        for path in _files(folder):
            if path.name.endswith(".parquet") and path.name != f"{UNPARTITIONED}.parquet":
                found.setdefault(path.name[: -len(".parquet")], []).append(path)
    for folder in subfolders(base / "artifacts"):
        if folder.name == MODELS:
            continue
        for path in _files(folder):
            for suffix in ARTEFACT_SUFFIXES:
                if path.name.endswith(suffix) and len(path.name) > len(suffix):
                    found.setdefault(path.name[: -len(suffix)], []).append(path)
    return found


def subfolders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))


def _files(folder: Path) -> list[Path]:
    """Plain files, without hidden ones (atomic_path's temporaries are hidden). Read from the
    directory entries, with no stat per file: a store of 10,000 scans holds ~100,000."""
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if e.is_file(follow_symlinks=False) and not e.name.startswith("."))


def retired_folders(store: Store) -> list[Path]:
    return subfolders(store.root / RETIRED)


def checked_path(store: Store, path: Path) -> Path:
    """`path`, refused unless it lies inside the store (symlinks resolved)."""
    if not path.resolve().is_relative_to(store.root.resolve()):
        raise ErasureRefused(f"{path} is outside the store {store.root}; nothing there is moved or deleted")
    return path


def _rel(store: Store, path: Path) -> str:
    return path.relative_to(store.root).as_posix()


def scans_with_results(store: Store) -> set[str]:
    """Every scan id with at least one per-scan lake file (`lake/<asset>/<scan>.parquet`)."""
    found = per_scan_files(store.root)
    return {scan for scan, paths in found.items() if any(p.is_relative_to(store.lake) for p in paths)}


# ---------------------------------------------------------------------------------------------
# Retiring scans


@dataclass(frozen=True)
class RetiredScan:
    scan_id: str
    reason: str
    n_files: int
    folder: str  # store-relative, e.g. "retired/2024-05-01" (or "retired/2024-05-01.2")


def retire_scans(store: Store, reasons: dict[str, str], when: datetime) -> list[RetiredScan]:
    """Move every per-scan lake file and artefact of each scan in `reasons` (scan id -> why it left
    the cohort) under `retired/<date>/`, and log one line per scan in `retired/retired.jsonl`.

    Nothing is deleted or overwritten (os.replace within the store). Scans with nothing to move are
    skipped and not logged. The caller serialises this with the pipeline's other lake writers: a
    build reading `lake/<asset>/*.parquet` while a file moves would miss or fail on it.
    """
    found = per_scan_files(store.root)
    day = when.strftime("%Y-%m-%d")
    taken: dict[Path, set[str]] = {}  # retired folder -> scans with files in it
    retired = []
    for scan_id in sorted(reasons):
        sources = found.get(scan_id, [])
        if not sources:
            continue
        folder = _free_folder(store, day, scan_id, taken)
        moved = []
        for source in sources:
            target = checked_path(store, folder / source.relative_to(store.root))
            checked_path(store, source)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():  # _free_folder chose a folder without this scan's files; be sure
                raise FileExistsError(f"{target} exists already; nothing retired is overwritten")
            os.replace(source, target)
            moved.append({"from": _rel(store, source), "to": _rel(store, target)})
        append_line(
            store.root / RETIRED / RETIRED_LOG,
            {
                "when": when.isoformat(),
                "scan_id": scan_id,
                "reason": reasons[scan_id],
                "folder": _rel(store, folder),
                "files": moved,
            },
        )
        retired.append(RetiredScan(scan_id, reasons[scan_id], len(moved), _rel(store, folder)))
    return retired


def _free_folder(store: Store, day: str, scan_id: str, taken: dict[Path, set[str]]) -> Path:
    """The day's folder, or `<day>.2`, `<day>.3`, ...: the first one holding no file of this scan."""
    n = 1
    while True:
        folder = store.root / RETIRED / (day if n == 1 else f"{day}.{n}")
        if folder not in taken:
            taken[folder] = set(per_scan_files(folder))
        if scan_id not in taken[folder]:
            taken[folder].add(scan_id)
            return folder
        n += 1


def read_retired_log(store: Store) -> list[dict]:
    """The lines of `retired/retired.jsonl`, oldest first."""
    return read_lines(store.root / RETIRED / RETIRED_LOG)


# ---------------------------------------------------------------------------------------------
# Forgetting a patient


def patient_hash(patient_id: str) -> str:
    """sha256 (hex) of the id: what the erasure log keeps instead of the id."""
    return hashlib.sha256(patient_id.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# JSON lines


def append_line(path: Path, record: dict) -> None:
    """One JSON line appended and flushed to disk (a line is small: one write of it is not torn)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} line {number} is not JSON ({error}); fix or remove that line") from None
    return records
