"""The cohort contract: `patients.csv` and `scans.csv` read, validated, and filtered by the study's
inclusion criteria.

Validation never stops at the first bad row: a cohort of hundreds of scans with one typo must still
run, and the researcher wants the whole list of problems at once. Each problem becomes a
`CohortError` naming file, line and fix; bad rows are kept in the `scans` table as not included,
so that SQL users see every scan the cohort lists and why it was left out.

Reading a file as a text table is contract_csv.py's; this module says what its rows must hold.
"""

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import pandas as pd

from metorigin.core.errors import (
    CohortError,
    DuplicateContentError,
    ImageGeometryError,
    ImageUnreadableError,
    InvalidValueError,
    MaskGeometryError,
    PathOutsideCohortError,
    UnknownPatientError,
)
from metorigin.core.ids import id_problem
from metorigin.core.schemas import PATIENTS, SCANS
from metorigin.core.study import CONTRAST_PHASES, InclusionCriteria, LabelSettings
from metorigin.imaging.contract_csv import duplicate_errors, read_contract_csv, utf8_text, without_oversized
from metorigin.imaging.forgotten import NONE_FORGOTTEN, qc_without_forgotten, without_forgotten
from metorigin.imaging.geometry import coverage_mismatch, grid_problem, slice_axis_tilt_deg
from metorigin.imaging.io import READ_LIMIT_FIX, READ_LIMIT_S, ImageInfo, ReadTimedOut, normalise_phase, read_image_info
from metorigin.imaging.same_content import earlier_copies

PATIENTS_CSV = "patients.csv"
SCANS_CSV = "scans.csv"
QC_CSV = "qc.csv"  # optional: a reviewer's image-QC verdict per scan (pass or fail, with the reason)
QC_REQUIRED = ("scan_id", "verdict")
QC_OPTIONAL = ("reason", "reviewer", "date")
QC_VERDICTS = ("pass", "fail")

PATIENT_OPTIONAL = ("age", "sex", "t_stage", "n_stage", "m_stage")
SCAN_REQUIRED = ("scan_id", "patient_id", "image")
SCAN_OPTIONAL = (
    "mask",
    "liver_labels",
    "lesion_labels",
    "ignore_labels",
    "kernel",
    "slice_thickness_mm",
    "contrast_phase",
)
IGNORE_ALL = "*"  # ignore_labels: every label value the row does not declare (an organ segmentation)
SEXES = ("F", "M")
DEFAULT_LIVER_LABELS = "1"
DEFAULT_LESION_LABELS = "2"


@dataclass
class Cohort:
    """A validated cohort: the tables that go to the store, and every problem found on the way."""

    patients: pd.DataFrame
    scans: pd.DataFrame
    errors: list[CohortError] = field(default_factory=list)

    @property
    def included_scan_ids(self) -> list[str]:
        return sorted(self.scans.loc[self.scans["included"], "scan_id"])


def patient_required(label: LabelSettings) -> tuple[str, str]:
    """The columns patients.csv must have: the id and the study's label column."""
    return ("patient_id", label.column)


def read_patients_csv(cohort_dir: Path, label: LabelSettings) -> pd.DataFrame:
    return read_contract_csv(Path(cohort_dir) / PATIENTS_CSV, patient_required(label), PATIENT_OPTIONAL)


def read_scans_csv(cohort_dir: Path) -> pd.DataFrame:
    return read_contract_csv(Path(cohort_dir) / SCANS_CSV, SCAN_REQUIRED, SCAN_OPTIONAL)


def validate_patients(frame: pd.DataFrame, label: LabelSettings) -> tuple[pd.DataFrame, list[CohortError]]:
    """Typed patient rows that pass the contract, and an error for each row that does not.

    The class comes from the study's label column (e.g. `primary_site`) and is stored as `label`.
    An empty cell is a patient whose class is not known (yet): stored with a NULL label, measured
    like every other patient, never trained on (training_matrix keeps labelled patients only)."""
    frame, errors = without_oversized(frame, PATIENTS_CSV)
    duplicated, duplicates = duplicate_errors(frame, PATIENTS_CSV, "patient_id")
    errors += duplicates
    rows = []
    for rec in frame.to_dict("records"):
        pid = rec["patient_id"]
        if pid in duplicated:
            continue
        problem = _patient_problem(rec, label)
        if problem:
            errors.append(InvalidValueError(PATIENTS_CSV, problem[0], problem[1], row=rec["line"], row_id=pid or None))
            continue
        rows.append(
            {
                "patient_id": pid,
                "label": rec[label.column].lower() or None,
                "age": float(rec["age"]) if rec["age"] else math.nan,
                "sex": rec["sex"].upper() or None,
                "t_stage": rec["t_stage"] or None,
                "n_stage": rec["n_stage"] or None,
                "m_stage": rec["m_stage"] or None,
                "source_line": rec["line"],
            }
        )
    return pd.DataFrame(rows, columns=PATIENTS.computed), errors


def _patient_problem(rec: dict, label: LabelSettings) -> tuple[str, str] | None:
    if not rec["patient_id"]:
        return "patient_id is empty", "give the patient a pseudonymous id"
    if problem := id_problem(rec["patient_id"], "patient_id"):
        return problem
    if rec[label.column] and rec[label.column].lower() not in label.classes:
        return (
            f"unknown {label.column} {rec[label.column]!r}",
            f"use one of {', '.join(label.classes)} (the study's label.classes), or leave the cell empty "
            "for a patient whose class is not known (measured and scored, never trained on)",
        )
    if rec["sex"] and rec["sex"].upper() not in SEXES:
        return f"unknown sex {rec['sex']!r}", "use F or M, or leave it empty"
    if rec["age"]:
        try:
            age = float(rec["age"])
        except ValueError:
            age = math.nan
        if not 0 <= age <= 120:
            return (
                f"age {rec['age']!r} is not a number of years",
                "write the age in years, e.g. 64.5, or leave it empty",
            )
    return None


def resolve_in_cohort(cohort_dir: Path, relative: str, file: str, row: int, row_id: str, column: str) -> Path:
    """The absolute path of a cohort-relative path, refusing anything that escapes the folder.

    The check is on the path as written ('..', absolute paths), not on where symlinks lead: a
    group may link a large image archive into its cohort folder on purpose.
    """
    root = cohort_dir.absolute()
    path = Path(os.path.normpath(root / relative))
    if Path(relative).is_absolute() or not path.is_relative_to(root):
        raise PathOutsideCohortError(
            file,
            f"{column} {relative!r} points outside the cohort folder {root}",
            "copy the file into the cohort folder and give its path relative to it",
            row=row,
            row_id=row_id,
        )
    return path


def _label_list(text: str, default: str, column: str, rec: dict) -> str:
    """Labels normalised to ';'-joined integers, so SQL users see one spelling."""
    if text == "":
        return default
    try:
        values = [int(v) for v in text.replace(",", ";").split(";") if v.strip()]
    except ValueError:
        raise InvalidValueError(
            SCANS_CSV,
            f"{column} {text!r} is not a list of integer label values",
            "write label values separated by ';', e.g. 2;3",
            row=rec["line"],
            row_id=rec["scan_id"],
        ) from None
    if any(v <= 0 for v in values):
        raise InvalidValueError(
            SCANS_CSV,
            f"{column} {text!r} contains 0 or a negative value",
            "label values are positive; 0 is background",
            row=rec["line"],
            row_id=rec["scan_id"],
        )
    return ";".join(str(v) for v in values)


def _read_info(path: Path, rec: dict, column: str, limit_s: float) -> ImageInfo:
    try:
        info = read_image_info(path, limit_s)
    except ReadTimedOut as exc:
        raise ImageUnreadableError(
            SCANS_CSV, f"{column} {rec[column]!r}: {exc}", READ_LIMIT_FIX, row=rec["line"], row_id=rec["scan_id"]
        ) from None
    except ValueError as exc:
        raise ImageUnreadableError(
            SCANS_CSV,
            f"{column} {rec[column]!r} cannot be used: {exc}",
            "check the path, or re-export the image as NIfTI, NRRD, MHA or one DICOM series",
            row=rec["line"],
            row_id=rec["scan_id"],
        ) from None
    problem = grid_problem(info.spacing, info.direction)
    if problem:
        raise ImageGeometryError(
            SCANS_CSV,
            f"{column} {rec[column]!r}: {problem}",
            "re-export it with the scanner's geometry (DICOM to NIfTI with dcm2niix keeps it)",
            row=rec["line"],
            row_id=rec["scan_id"],
        )
    return info


def inspect_scan(rec: dict, cohort_dir: Path, read_limit_s: float = READ_LIMIT_S) -> dict:
    """Everything the contract says about one scan row, read from the CSV and the image headers
    (each given up after `read_limit_s`).

    Raises a CohortError subclass when the row cannot be used at all.
    """
    sid = rec["scan_id"]
    image_path = resolve_in_cohort(cohort_dir, rec["image"], SCANS_CSV, rec["line"], sid, "image")
    info = _read_info(image_path, rec, "image", read_limit_s)
    if rec["mask"]:
        mask_path = resolve_in_cohort(cohort_dir, rec["mask"], SCANS_CSV, rec["line"], sid, "mask")
        mismatch = coverage_mismatch(info, _read_info(mask_path, rec, "mask", read_limit_s))
        if mismatch:
            raise MaskGeometryError(
                SCANS_CSV,
                mismatch,
                "export the mask on the image's grid, or on a grid covering the same physical space",
                row=rec["line"],
                row_id=sid,
            )
    liver = _label_list(rec["liver_labels"] or "", DEFAULT_LIVER_LABELS, "liver_labels", rec)
    # An absent lesion_labels column means the default; an empty cell means "this mask has no
    # lesion label" (e.g. an organ segmentation with the liver only).
    lesion = (
        ""
        if rec["lesion_labels"] == ""
        else _label_list(rec["lesion_labels"] or "", DEFAULT_LESION_LABELS, "lesion_labels", rec)
    )
    ignore = rec["ignore_labels"] or ""
    if ignore.strip() != IGNORE_ALL:
        ignore = _label_list(ignore, "", "ignore_labels", rec)
    header = info.header
    thickness, thickness_source = _slice_thickness(rec, header, info)
    kernel, kernel_source = _first_given((rec["kernel"], "scans.csv"), (header.get("ConvolutionKernel"), "dicom"))
    phase_text, phase_source = _first_given(
        (rec["contrast_phase"], "scans.csv"),
        (header.get("SeriesDescription"), "dicom"),
        (header.get("ProtocolName"), "dicom"),
    )
    phase = normalise_phase(phase_text)
    if rec["contrast_phase"] and phase is None:
        raise InvalidValueError(
            SCANS_CSV,
            f"unknown contrast_phase {rec['contrast_phase']!r}",
            f"use one of {', '.join(CONTRAST_PHASES)}",
            row=rec["line"],
            row_id=sid,
        )
    return {
        "kernel": kernel,
        "kernel_source": kernel_source,
        "slice_thickness_mm": thickness,
        "slice_thickness_source": thickness_source,
        "contrast_phase": phase,
        "contrast_phase_source": phase_source if phase else None,
        "liver_labels": liver,
        "lesion_labels": lesion,
        "ignore_labels": ignore.strip() or None,
        "image_format": "dicom" if image_path.is_dir() else _format_of(image_path),
        "size_x": info.size[0],
        "size_y": info.size[1],
        "size_z": info.size[2],
        "spacing_x": info.spacing[0],
        "spacing_y": info.spacing[1],
        "spacing_z": info.spacing[2],
        "origin_x": info.origin[0],
        "origin_y": info.origin[1],
        "origin_z": info.origin[2],
        "direction": ";".join(f"{v:.6g}" for v in info.direction),
        "slice_tilt_deg": slice_axis_tilt_deg(info),
        "pixel_type": info.pixel_type,
    }


def _first_given(*candidates: tuple[str | None, str]) -> tuple[str | None, str | None]:
    for value, source in candidates:
        if value:
            return value, source
    return None, None


def _slice_thickness(rec: dict, header: dict, info: ImageInfo) -> tuple[float, str]:
    """Slice thickness from the CSV, else the DICOM header, else the slice spacing.

    Spacing is only a stand-in (overlapping reconstructions have spacing < thickness), which is why
    the source is recorded next to the value.
    """
    if rec["slice_thickness_mm"]:
        try:
            value = float(rec["slice_thickness_mm"])
        except ValueError:
            value = math.nan
        if not value > 0:
            raise InvalidValueError(
                SCANS_CSV,
                f"slice_thickness_mm {rec['slice_thickness_mm']!r} is not a positive number",
                "write the thickness in mm, e.g. 1.5, or leave it empty",
                row=rec["line"],
                row_id=rec["scan_id"],
            )
        return value, "scans.csv"
    if header.get("SliceThickness"):
        return float(header["SliceThickness"]), "dicom"
    return float(info.spacing[2]), "spacing"


def _format_of(path: Path) -> str:
    name = path.name.lower()
    for suffix, fmt in (
        (".nii.gz", "nifti"),
        (".nii", "nifti"),
        (".nrrd", "nrrd"),
        (".nhdr", "nrrd"),
        (".mha", "mha"),
        (".mhd", "mha"),
    ):
        if name.endswith(suffix):
            return fmt
    return path.suffix.lstrip(".") or "unknown"


def exclusion_reasons(scan: dict, criteria: InclusionCriteria) -> list[str]:
    """Why a readable scan falls outside the study protocol; empty when it is included."""
    reasons = []
    if scan["contrast_phase"] is None:
        reasons.append("contrast phase unknown (set contrast_phase in scans.csv)")
    elif scan["contrast_phase"] not in criteria.contrast_phases:
        reasons.append(f"contrast phase {scan['contrast_phase']} is not {' or '.join(criteria.contrast_phases)}")
    accepted = {k.lower() for k in criteria.kernels}
    if scan["kernel"] is None:
        reasons.append("reconstruction kernel unknown (set kernel in scans.csv)")
    elif scan["kernel"].lower() not in accepted:
        reasons.append(f"kernel {scan['kernel']} is not {' or '.join(criteria.kernels)}")
    if abs(scan["slice_thickness_mm"] - criteria.slice_thickness_mm) > criteria.slice_thickness_tolerance_mm:
        reasons.append(f"slice thickness {scan['slice_thickness_mm']:g} mm is not {criteria.slice_thickness_mm:g} mm")
    if scan["slice_tilt_deg"] > criteria.max_slice_tilt_deg:
        reasons.append(f"not axial (slice axis tilted {scan['slice_tilt_deg']:.0f} degrees)")
    if scan["size_z"] < criteria.min_slices:
        reasons.append(f"too few slices ({scan['size_z']}; the study's minimum is {criteria.min_slices})")
    return reasons


def read_qc_csv(cohort_dir: Path) -> pd.DataFrame | None:
    """qc.csv when the cohort has one with any row; None otherwise. A file that cannot be read as a
    whole (no scan_id or verdict column, a row with extra fields) raises like the other two CSVs."""
    path = Path(cohort_dir) / QC_CSV
    if not path.is_file() or len(utf8_text(path).strip().splitlines()) < 2:
        return None
    return read_contract_csv(path, QC_REQUIRED, QC_OPTIONAL)


def qc_verdicts(frame: pd.DataFrame | None, scan_ids: set[str]) -> tuple[dict[str, str], list[CohortError]]:
    """The scans qc.csv fails (scan id -> the exclusion reason) and its bad rows. A row that cannot
    be read as a verdict (unknown verdict, a fail without a reason, a duplicate) excludes its scan
    too: a reviewer meant something by it, and the scan waits until the row says what."""
    if frame is None:
        return {}, []
    kept, errors = without_oversized(frame, QC_CSV)
    # A row refused for a cell too long still excludes its scan (its verdict may be a fail).
    failed = {
        rec["scan_id"]: f"qc.csv line {rec['line']} unreadable: a cell is too long"
        for rec in frame[~frame["line"].isin(kept["line"])].to_dict("records")
        if rec["scan_id"] in scan_ids
    }
    frame = kept
    duplicated, duplicates = duplicate_errors(frame, QC_CSV, "scan_id")
    errors += duplicates
    for rec in frame.to_dict("records"):
        sid, verdict, reason = rec["scan_id"], (rec["verdict"] or "").lower(), rec["reason"] or ""
        who = ", ".join(v for v in (rec["reviewer"], rec["date"]) if v)
        problem = None
        if sid not in scan_ids:
            problem = (f"scan {sid!r} is not listed in scans.csv", "correct scan_id or delete the row")
        elif sid in duplicated:
            problem = ("the scan has more than one verdict", "keep one row per scan")
        elif verdict not in QC_VERDICTS:
            problem = (f"unknown verdict {rec['verdict']!r}", f"use one of {', '.join(QC_VERDICTS)}")
        elif verdict == "fail" and not reason:
            problem = ("a failed scan needs its reason", "say in the reason column what is wrong with the image")
        if problem:
            if sid not in duplicated:
                errors.append(InvalidValueError(QC_CSV, *problem, row=rec["line"], row_id=sid or None))
            if sid in scan_ids:
                failed[sid] = f"qc.csv line {rec['line']} unreadable: {problem[0]}"
        elif verdict == "fail":
            failed[sid] = f"failed image QC{f' ({who})' if who else ''}: {reason}"
    return failed, errors


def validate_scans(
    frame: pd.DataFrame,
    patients: pd.DataFrame,
    patient_frame: pd.DataFrame,
    cohort_dir: Path,
    criteria: InclusionCriteria,
    qc: pd.DataFrame | None = None,
    read_limit_s: float = READ_LIMIT_S,
) -> tuple[pd.DataFrame, list[CohortError]]:
    """One row per scan listed, each either included or carrying the reason it is not (the study's
    inclusion criteria, and a failed verdict in `qc`, the cohort's qc.csv); a header still being
    read after `read_limit_s` fails its row."""
    failed_qc, qc_errors = qc_verdicts(qc, set(frame["scan_id"]))
    frame, errors = without_oversized(frame, SCANS_CSV)
    duplicated, duplicates = duplicate_errors(frame, SCANS_CSV, "scan_id")
    errors += duplicates
    first_of = {e.row_id: e for e in duplicates}  # a duplicated id's one error, for each of its rows
    known = set(patients["patient_id"])
    listed = set(patient_frame["patient_id"])
    rows = []
    for rec in frame.to_dict("records"):
        row = {c: None for c in SCANS.computed}
        row.update(
            scan_id=rec["scan_id"],
            patient_id=rec["patient_id"],
            image=rec["image"],
            mask=rec["mask"] or None,
            source_line=rec["line"],
            valid=False,
            included=False,
        )
        try:
            if not rec["scan_id"]:
                raise InvalidValueError(SCANS_CSV, "scan_id is empty", "give the scan an id", row=rec["line"])
            if problem := id_problem(rec["scan_id"], "scan_id"):
                raise InvalidValueError(SCANS_CSV, *problem, row=rec["line"], row_id=rec["scan_id"])
            if rec["scan_id"] in duplicated:
                raise first_of[rec["scan_id"]]
            if rec["patient_id"] not in known:
                why = (
                    "has an invalid row in patients.csv"
                    if rec["patient_id"] in listed
                    else "is not listed in patients.csv"
                )
                raise UnknownPatientError(
                    SCANS_CSV,
                    f"patient {rec['patient_id']!r} {why}",
                    "add or fix the patient's row in patients.csv, or correct patient_id",
                    row=rec["line"],
                    row_id=rec["scan_id"],
                )
            row.update(inspect_scan(rec, cohort_dir, read_limit_s))
        except CohortError as exc:
            if exc.kind != "duplicate_id":
                errors.append(exc)
            row.update(error_kind=exc.kind, exclusion_reason=f"invalid row: {exc.problem}")
        else:
            reasons = exclusion_reasons(row, criteria) + (
                [failed_qc[rec["scan_id"]]] if rec["scan_id"] in failed_qc else []
            )
            row.update(valid=True, included=not reasons, exclusion_reason="; ".join(reasons) or None)
        rows.append(row)
    errors += _refuse_copies(rows, cohort_dir)
    return pd.DataFrame(rows, columns=SCANS.computed), errors + qc_errors


def _refuse_copies(rows: list[dict], cohort_dir: Path) -> list[CohortError]:
    """Each valid row whose image has the bytes of an earlier valid row's made invalid (same_content.py)."""
    valid = {row["scan_id"]: row for row in rows if row["valid"]}
    copies = earlier_copies({sid: cohort_dir.absolute() / row["image"] for sid, row in valid.items()})
    errors = []
    for scan_id, original in copies.items():
        row, first = valid[scan_id], valid[original]
        error = DuplicateContentError(
            SCANS_CSV,
            f"its image has the same content as scan {original}'s (line {first['source_line']}): "
            "the same scan would be counted twice",
            "delete the row, or give it the rescan's own image (a study that includes a rescan needs its new image)",
            row=row["source_line"],
            row_id=scan_id,
        )
        errors.append(error)
        row.update(valid=False, included=False, error_kind=error.kind, exclusion_reason=f"invalid row: {error.problem}")
    return errors


def load_cohort(
    cohort_dir: Path,
    criteria: InclusionCriteria = InclusionCriteria(),
    label: LabelSettings = LabelSettings(),
    forgotten: Mapping[str, str] = NONE_FORGOTTEN,
    read_limit_s: float = READ_LIMIT_S,
) -> Cohort:
    """Read and validate a cohort folder, without the rows of the store's `forgotten` patients.

    Raises CohortFileError / MissingColumnError only when a whole CSV is unusable; row problems
    are collected in `Cohort.errors`.
    """
    cohort_dir = Path(cohort_dir)
    patient_frame, gone = without_forgotten(read_patients_csv(cohort_dir, label), PATIENTS_CSV, forgotten)
    listed = read_scans_csv(cohort_dir)
    scan_frame, gone_scans = without_forgotten(listed, SCANS_CSV, forgotten)
    qc, gone_verdicts = qc_without_forgotten(read_qc_csv(cohort_dir), QC_CSV, listed, forgotten)
    patients, patient_errors = validate_patients(patient_frame, label)
    scans, scan_errors = validate_scans(scan_frame, patients, patient_frame, cohort_dir, criteria, qc, read_limit_s)
    errors = gone + patient_errors + gone_scans + gone_verdicts + scan_errors
    return Cohort(patients=patients, scans=scans, errors=errors)
