"""Full decode and plausibility checks of a scan (metorigin/imaging/integrity.py), on tiny files.

Each damaged file here is one that a reader accepts silently somewhere: SimpleITK reads half a
.nii.gz as zeros, zeroes NaN in NIfTI, turns a zero pixdim into 1 mm, and GDCM drops a truncated
DICOM slice from its series.
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from metorigin.imaging import decoding
from metorigin.imaging.decoding import decode
from metorigin.imaging.integrity import check_scan, fingerprint, fingerprint_or_none, mask_findings
from metorigin.imaging.synth.dicom import write_dicom_series

FORMATS = [".nii.gz", ".nii", ".mha", ".nrrd"]
SHAPE = (6, 8, 10)  # z, y, x
SPACING = (0.8, 0.8, 2.0)


def _image(values: np.ndarray, spacing=SPACING) -> sitk.Image:
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(spacing)
    image.SetOrigin((-4.0, 10.0, 3.0))
    return image


def _ct(dtype=np.int16) -> np.ndarray:
    """Soft tissue around 40 HU with air in one corner, as every abdominal CT has."""
    values = 40 + (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 7) * 5
    values[0, :2, :2] = -1000
    return values.astype(dtype)


def _liver_mask(labels=(1, 2)) -> np.ndarray:
    """Liver (the first label) in the middle, a small lesion (the second) inside it; further labels beside."""
    mask = np.zeros(SHAPE, np.uint8)
    mask[1:5, 2:7, 3:9] = labels[0]
    if len(labels) > 1:
        mask[2:4, 3:5, 4:6] = labels[1]
    for k, extra in enumerate(labels[2:]):
        mask[5, 0, k] = extra
    return mask


def _write(image: sitk.Image, path: Path, compress: bool = True) -> Path:
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


def _check(image_path, mask_path=None, liver=(1,), lesion=(2,), ignore=()):
    return check_scan(image_path, mask_path, liver, lesion, ignore)


def _problems(result) -> str:
    return " | ".join(f.problem for f in result.problems)


# ---------------------------------------------------------------------------------------------
# Good images


@pytest.mark.parametrize("dtype", [np.float32, np.int16], ids=["float", "int16"])
@pytest.mark.parametrize("ext", FORMATS)
def test_a_good_ct_passes(tmp_path, ext, dtype):
    path = _write(_image(_ct(dtype)), tmp_path / f"ct{ext}")

    result = _check(path)

    assert result.passed, _problems(result)
    assert result.warnings == []
    assert result.facts["min_hu"] == -1000
    assert result.facts["max_hu"] == 70
    assert result.facts["n_nonfinite"] == 0
    assert fingerprint(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.image is not None and result.mask is None  # the decoded image, for the steps after the check
    assert sitk.GetArrayViewFromImage(result.image.image).max() == 70


# ---------------------------------------------------------------------------------------------
# Damaged files


def _keep_first_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "ext, spoil, reason",
    [
        (".nii.gz", _keep_first_half, "the compressed data ends early"),
        (".nii", _keep_first_half, "bytes of voxel data its header promises"),
        (".mha", _keep_first_half, "the voxel data ends early or cannot be read"),
        (".nrrd", _keep_first_half, "the voxel data ends early or cannot be read"),
        (".nii.gz", _flip_middle_byte, "the compressed data is corrupt"),
    ],
    ids=["truncated-nii.gz", "truncated-nii", "truncated-mha", "truncated-nrrd", "corrupt-nii.gz"],
)
def test_a_damaged_file_cannot_be_decoded(tmp_path, ext, spoil, reason):
    # Noise compresses poorly, so half the file cuts through the voxel data, not the header.
    noise = np.random.default_rng(0).normal(0, 300, SHAPE).astype(np.float32)
    noise[0, 0, 0] = -1000
    path = _write(_image(noise), tmp_path / f"ct{ext}", compress=True)
    spoil(path)

    result = _check(path)

    assert not result.passed
    assert len(result.problems) == 1
    problem = result.problems[0]
    assert problem.problem.startswith(f"image ct{ext} cannot be decoded fully: ")
    assert reason in problem.problem
    assert "copy the file again" in problem.fix
    assert result.facts["min_hu"] != result.facts["min_hu"]  # NaN: no voxel checks on an undecoded file
    with pytest.raises(decoding.DamagedFileError, match=reason):
        decode(path)


@pytest.mark.parametrize("ext", FORMATS)
def test_nan_and_inf_voxels_are_counted_in_every_format(tmp_path, ext):
    # In NIfTI, SimpleITK reads NaN and inf as 0: the count must come from the stored bytes.
    values = _ct(np.float32)
    values[3, 3, 3] = np.nan
    values[3, 3, 4] = np.nan
    values[4, 4, 4] = np.inf
    path = _write(_image(values), tmp_path / f"ct{ext}")

    result = _check(path)

    assert not result.passed
    assert "3 voxels are NaN or infinite" in _problems(result)
    assert result.facts["n_nonfinite"] == 3
    assert result.facts["min_hu"] == -1000
    assert decode(path).n_nonfinite == 3


# ---------------------------------------------------------------------------------------------
# Grid


def _mha_with_spacing(path: Path, spacing: str) -> Path:
    _write(_image(_ct()), path, compress=False)
    text, n = re.subn(rb"ElementSpacing = [^\n]*", f"ElementSpacing = {spacing}".encode(), path.read_bytes(), count=1)
    assert n == 1
    path.write_bytes(text)
    return path


def _nii_with_pixdim(path: Path, value: float) -> Path:
    """pixdim[1] patched in place: nibabel's writer would 'repair' it, and ITK reads 0 as 1 mm, -x as x."""
    _write(_image(_ct()), path)
    data = bytearray(path.read_bytes())
    assert struct.unpack("<f", data[80:84])[0] == pytest.approx(0.8)
    data[80:84] = struct.pack("<f", value)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "make, shown",
    [
        (lambda p: _mha_with_spacing(p / "ct.mha", "0 0.8 2"), "spacing of [0, 0.8, 2] mm"),
        (lambda p: _mha_with_spacing(p / "ct.mha", "-0.8 0.8 2"), "spacing -0.8, 0.8, 2 mm is not positive"),
        (lambda p: _nii_with_pixdim(p / "ct.nii", 0.0), "spacing 0, 0.8, 2 mm is not positive"),
        (lambda p: _nii_with_pixdim(p / "ct.nii", -0.8), "spacing -0.8, 0.8, 2 mm is not positive"),
    ],
    ids=["zero-mha", "negative-mha", "zero-nii", "negative-nii"],
)
def test_zero_or_negative_spacing_is_a_problem(tmp_path, make, shown):
    result = _check(make(tmp_path))

    assert not result.passed
    assert len(result.problems) == 1
    assert shown in result.problems[0].problem
    assert "true voxel spacing" in result.problems[0].fix


@pytest.mark.parametrize("ext", [".mha", ".nrrd"])
def test_direction_cosines_that_are_not_orthonormal_are_a_problem(tmp_path, ext):
    image = _image(_ct())
    image.SetDirection((1, 0.2, 0, 0, 1, 0, 0, 0, 1))  # x and y axes not perpendicular
    path = _write(image, tmp_path / f"ct{ext}")

    result = _check(path)

    assert not result.passed
    assert "the direction cosines are not orthonormal" in _problems(result)


# ---------------------------------------------------------------------------------------------
# Hounsfield units


@pytest.mark.parametrize(
    "low, high, dtype, expected",
    [
        (0, 4095, np.int16, "the lowest voxel value is 0"),
        (0, 255, np.uint8, "a windowed export (0..255)"),
        (-100, 300, np.int16, "the lowest voxel value is -100"),
        (-101, 300, np.int16, None),
        (-1000, 1e6, np.float32, "outside what a CT stores"),
        (-40000, 300, np.int32, "outside what a CT stores"),
    ],
    ids=["stored-values", "windowed", "at-bound", "below-bound", "too-high", "too-low"],
)
def test_values_must_look_like_a_ct_in_hounsfield_units(tmp_path, low, high, dtype, expected):
    values = np.linspace(low, high, np.prod(SHAPE)).reshape(SHAPE).astype(dtype)
    path = _write(_image(values), tmp_path / "ct.mha")

    result = _check(path)

    assert result.facts["min_hu"] == low
    if expected is None:
        assert result.passed, _problems(result)
    else:
        assert [expected in f.problem for f in result.problems] == [True]
        assert "apply RescaleSlope and RescaleIntercept" in result.problems[0].fix


def test_every_problem_of_an_image_is_reported(tmp_path):
    values = np.linspace(0, 4095, np.prod(SHAPE)).reshape(SHAPE).astype(np.float32)
    values[2, 2, 2] = np.nan
    image = _image(values)
    image.SetDirection((1, 0.2, 0, 0, 1, 0, 0, 0, 1))
    path = _write(image, tmp_path / "ct.mha")

    problems = _problems(_check(path))

    assert "not orthonormal" in problems
    assert "1 voxels are NaN or infinite" in problems
    assert "the lowest voxel value is 0" in problems


# ---------------------------------------------------------------------------------------------
# DICOM


def _dicom_series(folder: Path) -> list[Path]:
    spec = SimpleNamespace(
        seed=7, patient_id="P001", contrast_phase="portal_venous", slice_thickness_mm=2.0, kernel="B30f"
    )
    write_dicom_series(_image(_ct()), folder, spec)
    return sorted(folder.iterdir())


def test_a_good_dicom_series_passes(tmp_path):
    files = _dicom_series(tmp_path / "series")
    (tmp_path / "series" / "README.txt").write_text("exported from PACS\n")  # not DICOM: ignored, as GDCM does

    result = _check(tmp_path / "series")

    assert len(files) == SHAPE[0]
    assert result.passed, _problems(result)
    assert (result.facts["min_hu"], result.facts["max_hu"]) == (-1000, 70)


@pytest.mark.parametrize("index", [0, 2, SHAPE[0] - 1], ids=["first", "middle", "last"])
def test_a_truncated_dicom_slice_is_named(tmp_path, index):
    # GDCM leaves a truncated slice out of the series without an error: the volume would be one slice short.
    files = _dicom_series(tmp_path / "series")
    data = files[index].read_bytes()
    files[index].write_bytes(data[:-100])

    result = _check(tmp_path / "series")

    assert not result.passed
    assert len(result.problems) == 1
    want = SHAPE[1] * SHAPE[2] * 2  # int16 rows x columns
    assert f"DICOM file {files[index].name} holds {want - 100} of the {want} bytes of pixel data" in (
        result.problems[0].problem
    )


@pytest.mark.parametrize(
    "keep, reason",
    [(400, "holds no pixel data"), (60, "is not a readable DICOM file")],
    ids=["cut-in-header", "cut-in-preamble"],
)
def test_a_dicom_slice_cut_before_its_pixels_is_named(tmp_path, keep, reason):
    files = _dicom_series(tmp_path / "series")
    files[1].write_bytes(files[1].read_bytes()[:keep])

    result = _check(tmp_path / "series")

    assert not result.passed
    assert f"DICOM file {files[1].name} {reason}" in _problems(result)


def test_slices_that_gdcm_leaves_out_are_a_problem(tmp_path, monkeypatch):
    _dicom_series(tmp_path / "series")
    # One frame more than GDCM reads: what a slice GDCM cannot decode, but pydicom can, looks like.
    monkeypatch.setattr(decoding, "_dicom_frames", lambda folder: SHAPE[0] + 1)

    result = _check(tmp_path / "series")

    assert f"the folder holds {SHAPE[0] + 1} DICOM slices but the series reads as {SHAPE[0]}" in _problems(result)


# ---------------------------------------------------------------------------------------------
# Masks


@pytest.fixture
def ct_path(tmp_path) -> Path:
    return _write(_image(_ct()), tmp_path / "ct.nii.gz")


def _mask_path(tmp_path: Path, values: np.ndarray, ext: str = ".nii.gz", spacing=SPACING) -> Path:
    return _write(_image(values, spacing), tmp_path / f"mask{ext}")


@pytest.mark.parametrize(
    "labels, liver, lesion, ignore, problems, warning",
    [
        ((1, 2), (1,), (2,), (), [], None),
        ((2, 3), (1,), (2,), (3,), ["the mask holds no liver label 1 (label values present: 2, 3)"], None),
        ((1,), (1,), (2,), (), [], "lesion label 2 is absent from the mask: the scan has 0 lesions"),
        ((1, 2, 3), (1,), (2,), (), ["the mask holds label value(s) 3 that scans.csv does not declare"], None),
        ((1, 2, 3, 4), (1,), (2,), (4,), ["the mask holds label value(s) 3 that scans.csv does not declare"], None),
        ((1, 2, 3), (1,), (2,), (3,), [], None),
        ((1, 2, 3, 4), (1,), (2,), None, [], None),
        ((6, 7, 1), (6,), (7,), (), ["the mask holds label value(s) 1 that scans.csv does not declare"], None),
        (
            (5, 3, 4),
            (1,),
            (2,),
            (),
            [
                "the mask holds no liver label 1 (label values present: 3, 4, 5)",
                "the mask holds label value(s) 3, 4, 5 that scans.csv does not declare",
            ],
            "lesion label 2 is absent from the mask: the scan has 0 lesions",
        ),
    ],
    ids=[
        "declared",
        "no-liver",
        "no-lesion",
        "undeclared",
        "partly-ignored",
        "ignored",
        "star-ignores-all",
        "other-values",
        "all-wrong",
    ],
)
def test_mask_labels_against_the_declared_ones(tmp_path, ct_path, labels, liver, lesion, ignore, problems, warning):
    mask_path = _mask_path(tmp_path, _liver_mask(labels))

    result = _check(ct_path, mask_path, liver, lesion, ignore)

    assert result.passed == (not problems)
    assert [f.problem for f in result.problems] == problems
    assert result.warnings == ([warning] if warning else [])
    assert result.facts["labels_present"] == ";".join(str(v) for v in sorted(labels))
    assert result.mask is not None and result.mask.image.GetSize() == result.image.image.GetSize()  # decoded, kept


def test_the_fixes_for_label_problems_say_what_to_change(tmp_path, ct_path):
    mask_path = _mask_path(tmp_path, _liver_mask((2, 3)))

    fixes = [f.fix for f in _check(ct_path, mask_path, (1,), (2,), ()).problems]

    assert fixes == [
        "set liver_labels (and lesion_labels) in scans.csv to the values your masks use",
        "declare them in liver_labels or lesion_labels, or list them in ignore_labels "
        "(`*` ignores every undeclared label, e.g. for an organ segmentation)",
    ]


def test_a_fractional_mask_is_a_problem(tmp_path, ct_path):
    values = _liver_mask().astype(np.float32)
    values[1, 2, 3] = 0.5
    mask_path = _mask_path(tmp_path, values)

    result = _check(ct_path, mask_path)

    assert [f.problem for f in result.problems] == [
        "the mask holds values that are not whole numbers (e.g. 0.5): it is a probability map "
        "or was resampled with interpolation, not a label map"
    ]


def test_a_float_mask_with_whole_numbers_passes(tmp_path, ct_path):
    mask_path = _mask_path(tmp_path, _liver_mask().astype(np.float32))

    result = _check(ct_path, mask_path)

    assert result.passed, _problems(result)
    assert result.facts["labels_present"] == "1;2"


@pytest.mark.parametrize("ext", [".nii.gz", ".mha"])
def test_nan_in_a_mask_is_a_problem(tmp_path, ct_path, ext):
    values = _liver_mask().astype(np.float32)
    values[0, 0, 0] = np.nan
    mask_path = _mask_path(tmp_path, values, ext)

    result = _check(ct_path, mask_path)

    assert "1 mask voxels are NaN or infinite" in _problems(result)


def test_a_liver_far_from_liver_hu_is_a_problem(tmp_path):
    values = _ct()
    values[1:5, 2:7, 3:9] = 1000  # the whole liver as dense as bone
    ct_path = _write(_image(values), tmp_path / "ct.nii.gz")
    mask_path = _mask_path(tmp_path, _liver_mask())

    result = _check(ct_path, mask_path)

    assert result.facts["liver_median_hu"] == 1000
    assert [f.problem.split(",")[0] for f in result.problems] == ["the liver's median is 1000 HU"]
    assert "the mask was drawn on this image" in result.problems[0].fix


def test_liver_hu_uses_a_mask_on_a_coarser_grid_resampled_onto_the_image(tmp_path):
    # Image: 8 x 8 x 8 voxels of 1 mm, HU = 20 * x index; one air voxel at x = 0.
    values = np.broadcast_to(20 * np.arange(8, dtype=np.int16), (8, 8, 8)).copy()
    values[0, 0, 0] = -1000
    ct_path = _write(_image(values, (1.0, 1.0, 1.0)), tmp_path / "ct.nii.gz")
    # Mask: 4 x 4 x 4 voxels of 2 mm over the same space (first centre half a fine voxel further).
    coarse = np.zeros((4, 4, 4), np.uint8)
    coarse[:, :, 2:] = 1  # x from 4 to 7 on the fine grid: HU 80, 100, 120, 140
    mask = sitk.GetImageFromArray(coarse)
    mask.SetSpacing((2.0, 2.0, 2.0))
    mask.SetOrigin((-4.0 + 0.5, 10.0 + 0.5, 3.0 + 0.5))
    mask_path = _write(mask, tmp_path / "mask.nii.gz")

    result = _check(ct_path, mask_path, (1,), (), ())

    assert result.passed, _problems(result)
    assert result.facts["liver_median_hu"] == 110


def test_mask_findings_without_an_image_still_checks_labels():
    mask = _image(_liver_mask((2, 3)))

    problems, warnings, facts = mask_findings(mask, None, (1,), (2,), ())

    assert len(problems) == 2
    assert warnings == []
    assert facts["labels_present"] == "2;3"
    assert facts["liver_median_hu"] != facts["liver_median_hu"]  # NaN: no image to measure


def test_check_scan_reports_a_missing_image_and_still_checks_the_mask(tmp_path):
    mask_path = _mask_path(tmp_path, _liver_mask((1, 3)))

    result = _check(tmp_path / "nowhere.nii.gz", mask_path)

    problems = [f.problem for f in result.problems]
    assert problems[0].startswith("image nowhere.nii.gz cannot be decoded fully: ")
    assert "does not exist" in problems[0]
    assert result.problems[0].fix == "check the path in scans.csv"
    assert problems[1:] == ["the mask holds label value(s) 3 that scans.csv does not declare"]
    assert fingerprint_or_none(tmp_path / "nowhere.nii.gz") is None and result.image is None
    assert result.facts["labels_present"] == "1;3"


def test_a_damaged_mask_is_a_problem(tmp_path, ct_path):
    mask_path = _mask_path(tmp_path, _liver_mask())
    _keep_first_half(mask_path)

    result = _check(ct_path, mask_path)

    assert [f.problem.split(":")[0] for f in result.problems] == ["mask mask.nii.gz cannot be decoded fully"]
    assert result.facts["min_hu"] == -1000  # the image was checked all the same


# ---------------------------------------------------------------------------------------------
# Fingerprints


def test_the_fingerprint_of_a_file_is_its_sha256_and_follows_every_byte(tmp_path):
    path = tmp_path / "ct.nii.gz"
    path.write_bytes(bytes(range(256)) * 10)
    before = fingerprint(path)
    _flip_middle_byte(path)

    assert before == hashlib.sha256(bytes(range(256)) * 10).hexdigest()
    assert fingerprint(path) != before


def test_the_fingerprint_of_a_dicom_folder_follows_every_byte_and_name(tmp_path):
    files = _dicom_series(tmp_path / "series")
    before = fingerprint(tmp_path / "series")
    _flip_middle_byte(files[3])
    after_byte = fingerprint(tmp_path / "series")
    files[3].rename(files[3].with_name("renamed.dcm"))

    assert len(before) == 64
    assert after_byte != before
    assert fingerprint(tmp_path / "series") not in (before, after_byte)
