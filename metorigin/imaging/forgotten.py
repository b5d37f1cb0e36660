"""Patients forgotten by a store (`metorigin forget`) and still listed in the cohort's CSVs.

Their rows are dropped as the CSVs are read, before anything else sees them, so that no table,
partition, event or log of the store takes their ids in again. Each dropped row is reported by file
and line only: messages reach the run logs and the asset checks' metadata, and those must not
name the patient either."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

import pandas as pd

from metorigin.core.errors import CohortError, InvalidValueError
from metorigin.core.lifecycle import patient_hash

NONE_FORGOTTEN: Mapping[str, str] = MappingProxyType({})  # a cohort read for no store
FORGOTTEN_FIX = "remove the row (the patient withdrew consent; the store refuses them for good)"


def without_forgotten(
    frame: pd.DataFrame, file: str, forgotten: Mapping[str, str]
) -> tuple[pd.DataFrame, list[CohortError]]:
    """`frame` (a CSV as read, with its `line` and `patient_id` columns) without the rows of the
    patients whose id hashes to a key of `forgotten` (sha256 -> the date they were forgotten)."""
    dates = _dates(frame, forgotten)
    return _dropped(frame, dates, file, "a patient forgotten on {}")


def qc_without_forgotten(
    qc: pd.DataFrame | None, file: str, scans: pd.DataFrame, forgotten: Mapping[str, str]
) -> tuple[pd.DataFrame | None, list[CohortError]]:
    """qc.csv (`file`) without its verdicts on the scans of forgotten patients (`scans`: scans.csv as read)."""
    if qc is None:
        return qc, []
    dates = _dates(scans, forgotten).dropna()
    by_scan = dict(zip(scans.loc[dates.index, "scan_id"], dates))
    return _dropped(qc, qc["scan_id"].map(by_scan), file, "a verdict on a scan of a patient forgotten on {}")


def _dates(frame: pd.DataFrame, forgotten: Mapping[str, str]) -> pd.Series:
    """Per row, the date its patient was forgotten, else NaN."""
    if not forgotten or frame.empty:
        return pd.Series(None, index=frame.index, dtype=object)
    return frame["patient_id"].astype("string").fillna("").map(lambda pid: forgotten.get(patient_hash(pid)))


def _dropped(frame: pd.DataFrame, dates: pd.Series, file: str, problem: str) -> tuple[pd.DataFrame, list[CohortError]]:
    gone = dates.notna()
    errors: list[CohortError] = [
        InvalidValueError(file, problem.format(date), FORGOTTEN_FIX, row=int(line))
        for line, date in zip(frame.loc[gone, "line"], dates[gone])
    ]
    return frame.loc[~gone], errors
