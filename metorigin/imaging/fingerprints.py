"""What a cohort's files are now, cheaply: the fingerprints ingest records and the sensor compares.

Size and modification time, not content: read at every ingest and every sensor tick, for every
file scans.csv names. A scan's full-decode check (integrity.py) hashes the bytes, once, when a
fingerprint changed.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pandas as pd

from metorigin.imaging.cohort import PATIENTS_CSV, QC_CSV, SCANS_CSV

# The columns of a scan's row that are not its inputs: where the row sits, and ingest's verdicts
# (the per-scan steps refuse an excluded scan themselves).
NOT_INPUTS = ("source_line", "settings_hash")


def file_stamp(path: Path) -> str:
    """A file's (or a DICOM folder's) size and modification time: cheap enough for every ingest."""
    try:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        return ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    except OSError:
        return "<missing>"


def cohort_fingerprint(cohort_dir: Path) -> str:
    """The CSVs' bytes (qc.csv's where there is one) and the size and time of every file scans.csv
    names: what the cohort sensor compares between ticks, and what `scans` records of the cohort it read."""
    digest = hashlib.sha256()
    for name in (PATIENTS_CSV, SCANS_CSV):
        path = cohort_dir / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    if (cohort_dir / QC_CSV).is_file():  # absent: the fingerprint of a cohort before qc.csv existed
        digest.update(QC_CSV.encode() + (cohort_dir / QC_CSV).read_bytes())
    if not (cohort_dir / SCANS_CSV).is_file():  # missing, or a FIFO that would block the sensor for ever
        return digest.hexdigest()[:16]
    try:
        with open(cohort_dir / SCANS_CSV, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                for column in ("image", "mask"):
                    if row.get(column):
                        digest.update(file_stamp(cohort_dir / row[column]).encode())
    except (OSError, UnicodeDecodeError, csv.Error):
        pass  # ingest reports what is wrong with the CSV
    return digest.hexdigest()[:16]


def row_inputs(row: dict) -> dict:
    """A scan's row as its inputs: less where it sits, empty cells as None (NaN never equals itself)."""
    return {k: (None if pd.isna(v) else v) for k, v in row.items() if k not in NOT_INPUTS}


def scan_inputs_version(row: dict, cohort_dir: Path) -> str:
    """The version of one scan's inputs: its row (less where it sits) and its files' size and time."""
    files = [file_stamp(cohort_dir / row[c]) for c in ("image", "mask") if isinstance(row.get(c), str) and row[c]]
    text = json.dumps([row_inputs(row), files], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]
