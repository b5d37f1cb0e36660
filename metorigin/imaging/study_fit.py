"""Whether a study fits a cohort, found before any work: its label column, both its classes, and
inclusion criteria that leave some scan."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping

import pandas as pd

from metorigin.core.errors import (
    CohortError,
    StudyFileError,
)
from metorigin.core.study import StudySettings
from metorigin.imaging.cohort import PATIENTS_CSV, load_cohort, patient_required, read_patients_csv
from metorigin.imaging.contract_csv import refuse_other_delimiter, utf8_text
from metorigin.imaging.forgotten import NONE_FORGOTTEN, without_forgotten


def class_problems(
    cohort_dir: Path, study: StudySettings, study_file: str, forgotten: Mapping[str, str] = NONE_FORGOTTEN
) -> list[StudyFileError]:
    """A class of the study that no patient has (but those the store forgot): the split and the
    models need both."""
    # As written in the cohort, before validation drops the rows whose class is not one of the two.
    patients, _ = without_forgotten(read_patients_csv(cohort_dir, study.label), PATIENTS_CSV, forgotten)
    present = set(patients[study.label.column].str.lower()) - {""}
    return [
        StudyFileError(
            study_file,
            "label.classes",
            f"no patient of {cohort_dir / PATIENTS_CSV} has the class {name!r} "
            f"(found: {', '.join(sorted(present)) or 'none'})",
            "list the two classes as the label column spells them, or add patients of both classes",
        )
        for name in study.label.classes
        if name not in present
    ]


def study_problems(
    cohort_dir: Path,
    study: StudySettings,
    study_file: str,
    classes: bool = True,
    forgotten: Mapping[str, str] = NONE_FORGOTTEN,
) -> list[StudyFileError]:
    """What makes a study unusable on this cohort, found before any work: a label column the
    cohort lacks, a class no patient has (`classes`: only what the study's own steps need; a cohort
    of one class still ingests and builds its feature store), inclusion criteria that exclude every
    readable scan. The patients a store forgot (`forgotten`) are left out, as its ingest leaves them.

    Each problem names the study file's key to change (or the cohort to fix)."""
    path = Path(cohort_dir) / PATIENTS_CSV
    try:
        text = utf8_text(path)
        refuse_other_delimiter(PATIENTS_CSV, text, patient_required(study.label))
        header = [str(c).strip() for c in pd.read_csv(io.StringIO(text), nrows=0).columns]
    except (OSError, ValueError, CohortError):
        header = None  # load_cohort below says what is wrong with the file
    if header is not None and study.label.column not in header:
        return [
            StudyFileError(
                study_file,
                "label.column",
                f"{PATIENTS_CSV} has no column {study.label.column!r} (found: {', '.join(header)})",
                f"name the column of {PATIENTS_CSV} that holds the class, or add it there",
            )
        ]
    cohort = load_cohort(cohort_dir, study.inclusion, study.label, forgotten, study.cluster.read_timeout_s)
    problems = class_problems(cohort_dir, study, study_file, forgotten) if classes else []
    valid = cohort.scans[cohort.scans["valid"]]
    if len(valid) and not valid["included"].any():
        reasons = [str(why).split("; ") for why in valid["exclusion_reason"]]
        keys = (
            ", ".join(
                sorted(
                    {
                        f"inclusion.{key}"
                        for start, key in _CRITERIA.items()
                        if all(any(r.startswith(start) for r in rs) for rs in reasons)
                    }
                )
            )
            or "inclusion"
        )
        problems.append(
            StudyFileError(
                study_file,
                keys,
                f"not one of the {len(valid)} readable scans meets the inclusion criteria "
                f"(e.g. {valid['scan_id'].iloc[0]}: {valid['exclusion_reason'].iloc[0]})",
                "widen the criteria to what the cohort was acquired with "
                "(`metorigin study --study FILE --cohort DIR` checks a study)",
            )
        )
    return problems


# The start of each exclusion reason, and the study file key that sets the criterion behind it.
_CRITERIA = {
    "contrast phase": "contrast_phases",
    "reconstruction kernel unknown": "kernels",
    "kernel": "kernels",
    "slice thickness": "slice_thickness_mm",
    "not axial": "max_slice_tilt_deg",
    "too few slices": "min_slices",
}
