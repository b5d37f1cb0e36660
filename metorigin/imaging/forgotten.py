"""Patients forgotten by a store (`metorigin forget`) and still listed in the cohort's CSVs.

Their rows are dropped as the CSVs are read, before anything else sees them, so that no table,
partition, event or log of the store takes their ids in again. Each dropped row is reported by file
and line only: messages reach the run logs and the asset checks' metadata, and those must not
name the patient either."""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from metorigin.core.errors import CohortError, InvalidValueError
from metorigin.core.lifecycle import patient_hash

FORGOTTEN_FIX = "remove the row (the patient withdrew consent; the store refuses them for good)"


def without_forgotten(
    frame: pd.DataFrame, file: str, forgotten: Mapping[str, str]
) -> tuple[pd.DataFrame, list[CohortError]]:
    """`frame` (a CSV as read, with its `line` and `patient_id` columns) without the rows of the
    patients whose id hashes to a key of `forgotten` (sha256 -> the date they were forgotten)."""
    if not forgotten or frame.empty:
        return frame, []
    dates = frame["patient_id"].astype("string").fillna("").map(lambda pid: forgotten.get(patient_hash(pid)))
    dropped = dates.notna()
    errors: list[CohortError] = [
        InvalidValueError(file, f"a patient forgotten on {date}", FORGOTTEN_FIX, row=int(line))
        for line, date in zip(frame.loc[dropped, "line"], dates[dropped])
    ]
    return frame.loc[~dropped], errors
