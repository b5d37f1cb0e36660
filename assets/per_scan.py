"""What every per-scan asset needs: its scan's row, its image, and a clear failure for that scan only."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pandas as pd
import SimpleITK as sitk

from .errors import ScanProcessingError
from .imaging.io import read_image


def scan_row(scans: pd.DataFrame, scan_id: str) -> dict:
    match = scans[scans["scan_id"] == scan_id]
    if match.empty:
        raise ScanProcessingError(scan_id, "lookup", "the scan is not in the scans table",
                                  "add it to scans.csv and materialise scans")
    row = match.iloc[0].to_dict()
    if not row["included"]:
        raise ScanProcessingError(scan_id, "lookup", f"the scan is not included ({row['exclusion_reason']})",
                                  "fix the row in scans.csv, or drop this partition")
    return row


def scan_image(cohort_dir: str | Path, row: dict) -> sitk.Image:
    return read_image(Path(cohort_dir) / row["image"])


@contextmanager
def failing_only_this_scan():
    """Turn a scan's processing error into a Dagster failure of this partition's step, message intact."""
    try:
        yield
    except ScanProcessingError as exc:
        raise dg.Failure(description=str(exc), metadata={"scan_id": exc.scan_id, "step": exc.step}) from exc
