"""The cohort contract: loader, validator and inclusion criteria, on real image files."""

from __future__ import annotations

import pandas as pd
import pytest
import SimpleITK as sitk

from metorigin.core import errors
from metorigin.imaging.cohort import load_cohort
from metorigin.imaging.geometry import coverage_mismatch
from metorigin.imaging.io import normalise_phase, read_image_info
from tests.helpers import append_row, replace_in

GOOD_ROW = "{sid},{pid},images/S0002.nii.gz,masks/S0002.nii.gz,1,2,B30s,1.5,portal_venous"


def test_tiny_cohort_loads_with_inclusion_reasons(cohort):
    loaded = load_cohort(cohort)
    assert loaded.errors == []
    assert len(loaded.patients) == len(pd.read_csv(cohort / "patients.csv"))
    scans = loaded.scans.set_index("scan_id")
    assert scans["valid"].all()
    excluded = scans[~scans["included"]]
    assert sorted(excluded["exclusion_reason"].str.split(" ").str[0:2].str.join(" ")) == [
        "contrast phase",
        "slice thickness",
    ]
    assert "arterial" in " ".join(excluded["exclusion_reason"])
    # every patient keeps an included scan
    assert set(scans[scans["included"]]["patient_id"]) == set(loaded.patients["patient_id"])


def test_dicom_series_metadata_comes_from_headers(cohort):
    scan = load_cohort(cohort).scans.set_index("scan_id").loc["S0001"]
    assert scan["image_format"] == "dicom"
    assert (scan["kernel"], scan["kernel_source"]) == ("B30s", "dicom")
    assert (scan["slice_thickness_mm"], scan["slice_thickness_source"]) == (1.5, "dicom")
    assert (scan["contrast_phase"], scan["contrast_phase_source"]) == ("portal_venous", "dicom")
    assert bool(scan["included"])


def test_dicom_geometry_matches_the_mask_grid(cohort):
    image = read_image_info(cohort / "images" / "S0001")
    mask = read_image_info(cohort / "masks" / "S0001.nii.gz")
    assert image.size == mask.size
    assert image.spacing == pytest.approx(mask.spacing, abs=1e-3)
    assert image.origin == pytest.approx(mask.origin, abs=1e-2)


def test_reoriented_mask_over_the_same_space_is_accepted(cohort):
    image = read_image_info(cohort / "images" / "S0002.nii.gz")
    mask = read_image_info(cohort / "masks" / "S0002.nii.gz")
    assert image.direction != mask.direction, "the generator writes this mask on a permuted grid"
    assert coverage_mismatch(image, mask) is None
    assert load_cohort(cohort).scans.set_index("scan_id").loc["S0002", "included"]


def test_mask_resampled_to_another_spacing_is_accepted_but_a_shifted_one_is_not(cohort, tmp_path):
    mask = sitk.ReadImage(str(cohort / "masks" / "S0003.nii.gz"))
    coarse = sitk.Resample(
        mask,
        [s // 2 for s in mask.GetSize()],
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        mask.GetOrigin(),
        [2 * s for s in mask.GetSpacing()],
        mask.GetDirection(),
    )
    coarse.SetOrigin(coarse.TransformContinuousIndexToPhysicalPoint([0.25, 0.25, 0.25]))  # edges line up
    sitk.WriteImage(coarse, str(tmp_path / "coarse.nii.gz"))
    image = read_image_info(cohort / "images" / "S0003.nii.gz")
    assert coverage_mismatch(image, read_image_info(tmp_path / "coarse.nii.gz")) is None
    shifted = sitk.Image(mask)
    shifted.SetOrigin([o + 3 * mask.GetSpacing()[2] * (i == 2) for i, o in enumerate(mask.GetOrigin())])
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nii.gz"))
    problem = coverage_mismatch(image, read_image_info(tmp_path / "shifted.nii.gz"))
    assert problem is not None and "along z" in problem


@pytest.mark.parametrize("fmt", ["nrrd", "mha"])
def test_nrrd_and_mha_images_are_read(cohort, fmt):
    image = sitk.ReadImage(str(cohort / "images" / "S0003.nii.gz"))
    sitk.WriteImage(image, str(cohort / f"S0003.{fmt}"))
    replace_in(cohort / "scans.csv", "images/S0003.nii.gz", f"S0003.{fmt}")
    scan = load_cohort(cohort).scans.set_index("scan_id").loc["S0003"]
    assert scan["image_format"] == fmt and scan["included"]


def test_missing_csv_is_a_file_error(cohort):
    (cohort / "patients.csv").unlink()
    with pytest.raises(errors.CohortFileError, match="patients.csv.*missing.*Fix: create patients.csv"):
        load_cohort(cohort)


def test_missing_column_names_the_column_and_the_fix(cohort):
    replace_in(cohort / "scans.csv", "scan_id,patient_id,image", "scan,patient_id,image")
    with pytest.raises(errors.MissingColumnError) as info:
        load_cohort(cohort)
    assert "scans.csv" in str(info.value) and "scan_id" in str(info.value)
    assert "Fix: add the column(s) scan_id" in str(info.value)


def _corrupt_file(cohort):
    (cohort / "corrupt.nii.gz").write_bytes(b"\x1f\x8b this is not a NIfTI file")
    return GOOD_ROW.format(sid="S0100", pid="P001").replace("images/S0002.nii.gz", "corrupt.nii.gz")


# (description, how to spoil the cohort -> the row's scan id, expected error type, words in the message)
ROW_CASES = [
    (
        "unknown patient",
        lambda c: append_row(c / "scans.csv", GOOD_ROW.format(sid="S0100", pid="P999")),
        errors.UnknownPatientError,
        "not listed in patients.csv",
    ),
    (
        "duplicate scan id",
        lambda c: append_row(c / "scans.csv", GOOD_ROW.format(sid="S0003", pid="P003")),
        errors.DuplicateIdError,
        "appears on 2 lines",
    ),
    (
        "missing image",
        lambda c: append_row(
            c / "scans.csv", GOOD_ROW.format(sid="S0100", pid="P001").replace("S0002.nii.gz,m", "gone.nii.gz,m")
        ),
        errors.ImageUnreadableError,
        "does not exist",
    ),
    (
        "corrupt image",
        lambda c: append_row(c / "scans.csv", _corrupt_file(c)),
        errors.ImageUnreadableError,
        "not a readable image",
    ),
    (
        "path outside the cohort",
        lambda c: append_row(
            c / "scans.csv", GOOD_ROW.format(sid="S0100", pid="P001").replace("images/S0002", "../elsewhere/S0002")
        ),
        errors.PathOutsideCohortError,
        "outside the cohort folder",
    ),
    (
        "absolute path",
        lambda c: append_row(
            c / "scans.csv", GOOD_ROW.format(sid="S0100", pid="P001").replace("images/S0002.nii.gz", "/etc/passwd")
        ),
        errors.PathOutsideCohortError,
        "outside the cohort folder",
    ),
    (
        "mask of another scan",
        lambda c: append_row(
            c / "scans.csv", GOOD_ROW.format(sid="S0100", pid="P001").replace("masks/S0002", "masks/S0004")
        ),
        errors.MaskGeometryError,
        "the mask spans",
    ),
    (
        "bad label list",
        lambda c: append_row(
            c / "scans.csv", GOOD_ROW.format(sid="S0100", pid="P001").replace(",1,2,B30s", ",1,two,B30s")
        ),
        errors.InvalidValueError,
        "lesion_labels 'two'",
    ),
    (
        "unknown phase",
        lambda c: append_row(
            c / "scans.csv", GOOD_ROW.format(sid="S0100", pid="P001").replace("portal_venous", "sunset")
        ),
        errors.InvalidValueError,
        "unknown contrast_phase",
    ),
    (
        "bad thickness",
        lambda c: append_row(c / "scans.csv", GOOD_ROW.format(sid="S0100", pid="P001").replace(",1.5,", ",thin,")),
        errors.InvalidValueError,
        "slice_thickness_mm 'thin'",
    ),
]


@pytest.mark.parametrize("spoil, error_type, words", [c[1:] for c in ROW_CASES], ids=[c[0] for c in ROW_CASES])
def test_bad_scan_row_is_reported_and_the_others_go_on(cohort, spoil, error_type, words):
    baseline = load_cohort(cohort).scans
    line = spoil(cohort)
    loaded = load_cohort(cohort)
    if error_type is errors.DuplicateIdError:  # one error per id, on its first line, naming this one
        matching = [e for e in loaded.errors if isinstance(e, error_type) and e.row_id == "S0003"]
        assert len(matching) == 1 and f", {line})" in matching[0].message, [e.message for e in loaded.errors]
        line = matching[0].row
    matching = [e for e in loaded.errors if isinstance(e, error_type) and e.row == line]
    assert matching, [e.message for e in loaded.errors]
    message = matching[0].message
    assert f"scans.csv line {line}" in message and words in message and "Fix: " in message
    bad = loaded.scans[loaded.scans["source_line"] == line].iloc[0]
    assert not bad["valid"] and not bad["included"] and bad["error_kind"] == error_type.kind
    still_included = set(loaded.scans.loc[loaded.scans["included"], "scan_id"])
    expected = set(baseline.loc[baseline["included"], "scan_id"])
    if error_type is errors.DuplicateIdError:
        expected.discard("S0003")  # neither copy of a duplicated id can be trusted
    assert still_included == expected


def test_unknown_primary_site_rejects_the_patient_and_names_its_scans(cohort):
    frame = pd.read_csv(cohort / "patients.csv", dtype=str, keep_default_na=False)
    frame.loc[frame["patient_id"] == "P002", "primary_site"] = "colon"
    frame.to_csv(cohort / "patients.csv", index=False)
    loaded = load_cohort(cohort)
    (patient_error,) = [e for e in loaded.errors if e.file == "patients.csv"]
    assert isinstance(patient_error, errors.InvalidValueError)
    assert patient_error.row == 3 and "unknown primary_site 'colon'" in patient_error.message
    assert "use one of colorectal, pancreatic" in patient_error.message
    assert "P002" not in set(loaded.patients["patient_id"])
    (scan_error,) = [e for e in loaded.errors if e.file == "scans.csv"]
    assert "P002" in scan_error.message and "has an invalid row in patients.csv" in scan_error.message


def test_duplicate_patient_rejects_every_copy(cohort):
    line = append_row(cohort / "patients.csv", "P001,colorectal,60,F,T3,N1,M1")
    loaded = load_cohort(cohort)
    (dup,) = [e for e in loaded.errors if isinstance(e, errors.DuplicateIdError)]
    assert dup.row == 2 and f"patient_id 'P001' appears on 2 lines (2, {line}); none of them is used" in dup.message
    assert "P001" not in set(loaded.patients["patient_id"])


def test_absent_lesion_column_defaults_but_empty_cell_means_no_lesion_label(cohort):
    frame = pd.read_csv(cohort / "scans.csv", dtype=str, keep_default_na=False)
    frame.loc[frame["scan_id"] == "S0003", "lesion_labels"] = ""
    frame.to_csv(cohort / "scans.csv", index=False)
    scans = load_cohort(cohort).scans.set_index("scan_id")
    assert scans.loc["S0003", "lesion_labels"] == "" and scans.loc["S0004", "lesion_labels"] == "2"
    frame.drop(columns=["lesion_labels", "liver_labels"]).to_csv(cohort / "scans.csv", index=False)
    scans = load_cohort(cohort).scans.set_index("scan_id")
    assert set(scans["lesion_labels"]) == {"2"} and set(scans["liver_labels"]) == {"1"}


def test_unknown_kernel_excludes_with_an_actionable_reason(cohort):
    frame = pd.read_csv(cohort / "scans.csv", dtype=str, keep_default_na=False)
    frame.loc[frame["scan_id"] == "S0004", "kernel"] = ""
    frame.to_csv(cohort / "scans.csv", index=False)
    scan = load_cohort(cohort).scans.set_index("scan_id").loc["S0004"]
    assert not scan["included"] and "kernel unknown (set kernel in scans.csv)" in scan["exclusion_reason"]


@pytest.mark.parametrize(
    "text, phase",
    [
        ("Portal venous", "portal_venous"),
        ("Abdomen PV 1.5 B30s", "portal_venous"),
        ("ART", "arterial"),
        ("native", "native"),
        ("Delayed 5min", "delayed"),
        ("", None),
        ("sunset", None),
    ],
)
def test_normalise_phase(text, phase):
    assert normalise_phase(text) == phase


def test_a_failed_qc_verdict_excludes_the_scan_with_its_reason_and_a_bad_row_names_its_line(cohort):
    included = load_cohort(cohort).included_scan_ids
    passed, failed, unreadable = included[:3]
    (cohort / "qc.csv").write_text(
        "scan_id,verdict,reason,reviewer,date\n"
        f"{passed},pass,,dr a,2026-11-20\n"
        f"{failed},FAIL,liver contour misses the left lobe,dr a,2026-11-20\n"
        f"{unreadable},maybe,,dr b,2026-11-21\n"
        "S9999,fail,motion,dr b,2026-11-21\n"
    )
    loaded = load_cohort(cohort)
    scans = loaded.scans.set_index("scan_id")
    assert bool(scans.loc[passed, "included"])
    assert not scans.loc[failed, "included"] and scans.loc[failed, "exclusion_reason"] == (
        "failed image QC (dr a, 2026-11-20): liver contour misses the left lobe"
    )
    # An unreadable verdict holds its scan back too, and each bad row is reported with its line and fix.
    assert not scans.loc[unreadable, "included"] and "qc.csv line 4" in scans.loc[unreadable, "exclusion_reason"]
    messages = sorted(e.message for e in loaded.errors)
    assert len(messages) == 2 and all(m.startswith("qc.csv line") for m in messages)
    assert "unknown verdict 'maybe'" in messages[0] and "use one of pass, fail" in messages[0]
    assert "'S9999' is not listed in scans.csv" in messages[1]
    assert sorted(loaded.included_scan_ids) == sorted(set(included) - {failed, unreadable})


def test_an_unquoted_comma_in_qc_csv_is_refused_with_its_line(cohort):
    scan = load_cohort(cohort).included_scan_ids[0]
    (cohort / "qc.csv").write_text(f"scan_id,verdict,reason\n{scan},fail,motion, streak artefacts\n")
    with pytest.raises(errors.CohortFileError) as refused:
        load_cohort(cohort)
    assert "qc.csv" in refused.value.message and "line 2 has 4 fields, the header 3" in refused.value.message
    assert "double quotes" in refused.value.message
