"""Full decode and plausibility checks of one scan's image and mask, before any result is written.

"SimpleITK read it without an exception" proves little. Checked with SimpleITK 2.5.7:
- a `.nii.gz` cut in half reads without error, the missing slices as zeros;
- a `.nii.gz` whose compressed stream is corrupt may decode wrongly in nibabel, which stops
  reading once it has the voxels and so never reaches the gzip checksum;
- the NIfTI reader turns NaN and inf voxels into 0 and a zero pixdim into 1 mm, silently;
- a truncated DICOM slice is silently left out of the series by GDCM's series scanner, so the
  volume comes back one slice short (with at most a warning on stderr, none when the slice was
  the first or last);
- MHA and NRRD keep NaN, and a truncated MHA or NRRD raises.

So every file is decoded in full here, with checks of its own where a reader is lenient, and its
values are checked for what a CT in Hounsfield units and a label map can hold. A problem makes
that one scan invalid, with a message that says what is wrong and what to do about it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from metorigin.core.files import file_digest
from metorigin.imaging.decoding import SPACING_FIX, DamagedFileError, Decoded, count_nonfinite, decode
from metorigin.imaging.geometry import grid_problem
from metorigin.imaging.io import READ_LIMIT_S, within

# What a CT can store: DICOM CT pixel data is 16 bits, and after RescaleSlope/RescaleIntercept
# every scanner's Hounsfield values fit a signed 16-bit integer (air -1000, dense metal ~ +3000,
# extended-range scanners up to ~ +30000). A value outside this range is not a HU value.
# Stored with each scan's check; a stored check is reused only while the files and this are unchanged,
# so raise it whenever a check is added or changed and every scan is checked again.
CHECKS_VERSION = 1

HU_STORABLE_MIN = -32768.0
HU_STORABLE_MAX = 32767.0

# An abdominal CT always shows air (outside the body, in the bowel: -1000 HU) or at least fat
# (-100 to -50 HU) somewhere, so its lowest value lies below -100 HU. A minimum at or above this
# means stored values without the DICOM rescale (0..4095), a windowed export (0..255), or not a CT.
HU_LOWEST_MUST_BE_BELOW = -100.0

# Where the liver's median can lie: an unenhanced fatty liver is about -50 HU, an enhanced liver
# 100-150 HU; lesions (counted with the liver here) pull it a little either way. A median outside
# means the image is not in Hounsfield units, or the mask was drawn on another image.
LIVER_MEDIAN_HU_MIN = -200.0
LIVER_MEDIAN_HU_MAX = 400.0

# Spacing and direction cosines are read as float32 from most headers: allow that much rounding.

_GRID_TOLERANCE = 1e-4  # relative, mm: grids that differ by less are the same grid
_CHUNK_VOXELS = 1 << 22  # label counting works on slabs of this many voxels to bound memory

_DIRECTION_FIX = "re-export the image from the scanner's DICOM series with a converter that keeps its orientation"
_HU_FIX = "export the CT in Hounsfield units (apply RescaleSlope and RescaleIntercept)"


@dataclass(frozen=True)
class Finding:
    """One problem with a scan: what is wrong and what to do, both for a person."""

    problem: str
    fix: str


@dataclass(frozen=True)
class ScanCheck:
    """The verdict on one scan: `passed` when there are no problems (warnings do not fail it)."""

    passed: bool
    problems: list[Finding]
    warnings: list[str]
    facts: dict
    # The files as decoded (None where one could not be, or was not given): the steps after the
    # check read these rather than the files again.
    image: Decoded | None = field(default=None, repr=False, compare=False)
    mask: Decoded | None = field(default=None, repr=False, compare=False)


# ---------------------------------------------------------------------------------------------
# Decoding


# ---------------------------------------------------------------------------------------------
# Fingerprints


def fingerprint(path: Path) -> str:
    """sha256 of a file, or of a folder's sorted (relative name, file sha256) list.

    Results are keyed to it: a scan re-exported or re-copied under the same name gets a new
    fingerprint, so results computed from the old bytes can be told apart.
    """
    path = Path(path)
    if not path.is_dir():
        return file_digest(path, length=64)
    digest = hashlib.sha256()
    for file in sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_digest(file, length=64)}\n".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Image checks


def image_findings(decoded: Decoded) -> list[Finding]:
    """Problems with a CT's grid and values: each would reach every number computed from it."""
    return [
        finding
        for finding in (
            _grid_finding(decoded),
            _nonfinite_finding(decoded.n_nonfinite, "voxels", "image", "a CT in Hounsfield units"),
            _hu_range_finding(*decoded.value_range),
        )
        if finding is not None
    ]


def _grid_finding(decoded: Decoded) -> Finding | None:
    """Spacing and axes that cannot place voxels in space (geometry.grid_problem, as ingest checks
    them), in ITK's image and in the header as stored: ITK reads a NIfTI pixdim of 0 as 1 mm and
    a negative one as positive."""
    direction = decoded.image.GetDirection()
    for spacing, where in ((decoded.image.GetSpacing(), "the image"), (decoded.header_spacing, "its header")):
        problem = grid_problem(spacing, direction) if spacing is not None else None
        if problem:
            fix = SPACING_FIX if "spacing" in problem else _DIRECTION_FIX
            return Finding(f"{where}: {problem} (volumes, diameters and positions would be wrong)", fix)
    return None


def _nonfinite_finding(n: int, what: str, kind: str, holder: str) -> Finding | None:
    if not n:
        return None
    return Finding(
        f"{n} {what} are NaN or infinite",
        f"re-export the {kind}; {holder} has a finite value in every voxel",
    )


def _hu_range_finding(lo: float, hi: float) -> Finding | None:
    if math.isnan(lo):
        return None  # no finite value: the non-finite finding says it
    if lo < HU_STORABLE_MIN or hi > HU_STORABLE_MAX:
        return Finding(
            f"the voxel values range from {lo:g} to {hi:g}, outside what a CT stores "
            f"({HU_STORABLE_MIN:g} to {HU_STORABLE_MAX:g} HU): the image is not in Hounsfield units",
            _HU_FIX,
        )
    if lo >= HU_LOWEST_MUST_BE_BELOW:
        return Finding(
            f"the lowest voxel value is {lo:g}, but an abdominal CT in Hounsfield units always holds fat or air "
            f"below {HU_LOWEST_MUST_BE_BELOW:g} HU: these look like stored values without the DICOM rescale, "
            "a windowed export (0..255), or not a CT at all",
            _HU_FIX,
        )
    return None


# ---------------------------------------------------------------------------------------------
# Mask checks


def mask_findings(
    mask: sitk.Image,
    image: sitk.Image | None,
    liver_labels: tuple[int, ...],
    lesion_labels: tuple[int, ...],
    ignore_labels: tuple[int, ...] | None,
    mask_nonfinite: int | None = None,
) -> tuple[list[Finding], list[str], dict]:
    """Problems, warnings and facts of a label mask against the labels scans.csv declares.

    `ignore_labels=None` ignores every undeclared label (`*` in scans.csv, e.g. for an organ
    segmentation); `()` ignores none. `image` None (it could not be decoded) skips the HU check.
    `mask_nonfinite` is the count from `decode()`, which sees NaN that ITK's NIfTI reader zeroes;
    None counts from `mask` itself.
    """
    voxels = sitk.GetArrayViewFromImage(mask)
    n_nonfinite = count_nonfinite(voxels) if mask_nonfinite is None else mask_nonfinite
    facts = {"labels_present": "", "liver_median_hu": math.nan}
    problems = [f for f in [_nonfinite_finding(n_nonfinite, "mask voxels", "mask", "a label map")] if f]
    labels, fraction = _labels_present(voxels, n_nonfinite > 0)
    if fraction is not None:
        problems.append(
            Finding(
                f"the mask holds values that are not whole numbers (e.g. {fraction:g}): it is a probability map "
                "or was resampled with interpolation, not a label map",
                "export the mask as integer labels (threshold a probability map; resample with nearest neighbour)",
            )
        )
        return problems, [], facts  # label values mean nothing in such a mask
    facts["labels_present"] = ";".join(str(v) for v in labels)
    problems += _label_problems(labels, liver_labels, lesion_labels, ignore_labels)
    warnings = _lesion_warnings(labels, lesion_labels)
    liver_present = bool(set(labels) & set(liver_labels))
    if image is not None and liver_present:
        median = _liver_median_hu(mask, image, tuple(liver_labels) + tuple(lesion_labels))
        facts["liver_median_hu"] = median
        finding = _liver_hu_finding(median)
        if finding:
            problems.append(finding)
    return problems, warnings, facts


def _labels_present(voxels: np.ndarray, has_nonfinite: bool) -> tuple[list[int], float | None]:
    """Non-zero label values, in order, and a fractional value if there is one (then no labels).

    Counts with bincount over slabs: linear time and bounded memory, where np.unique would sort
    the whole volume.
    """
    flat = voxels.reshape(-1)
    if has_nonfinite:
        flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return [], None
    lo, hi = float(flat.min()), float(flat.max())
    is_float = flat.dtype.kind == "f"
    if is_float and (lo < -(2.0**62) or hi > 2.0**62):
        return [], hi if abs(hi) > abs(lo) else lo  # no integer label is this large
    base = int(lo)
    counts = np.zeros(int(hi) - base + 1, dtype=np.int64) if hi - lo < (1 << 20) else None
    found: set[int] = set()
    for start in range(0, flat.size, _CHUNK_VOXELS):
        part = flat[start : start + _CHUNK_VOXELS]
        whole = part.astype(np.int64)
        if is_float:
            off = whole != part
            if off.any():
                return [], float(part[off][0])
        if counts is None:
            found.update(int(v) for v in np.unique(whole))
        else:
            counts += np.bincount(whole - base, minlength=counts.size)
    if counts is not None:
        found = {int(v) + base for v in np.flatnonzero(counts)}
    return sorted(v for v in found if v != 0), None


def _label_problems(labels, liver_labels, lesion_labels, ignore_labels) -> list[Finding]:
    problems = []
    if not set(labels) & set(liver_labels):
        present = _join(labels) or "none"
        problems.append(
            Finding(
                f"the mask holds no liver label {_join(liver_labels)} (label values present: {present})",
                "set liver_labels (and lesion_labels) in scans.csv to the values your masks use",
            )
        )
    if ignore_labels is not None:
        declared = set(liver_labels) | set(lesion_labels) | set(ignore_labels)
        undeclared = [v for v in labels if v not in declared]
        if undeclared:
            problems.append(
                Finding(
                    f"the mask holds label value(s) {_join(undeclared)} that scans.csv does not declare",
                    "declare them in liver_labels or lesion_labels, or list them in ignore_labels "
                    "(`*` ignores every undeclared label, e.g. for an organ segmentation)",
                )
            )
    return problems


def _lesion_warnings(labels, lesion_labels) -> list[str]:
    absent = [v for v in lesion_labels if v not in set(labels)]
    if not absent:
        return []
    plural = len(absent) > 1
    text = f"lesion label{'s' if plural else ''} {_join(absent)} {'are' if plural else 'is'} absent from the mask"
    if len(absent) == len(lesion_labels):
        text += ": the scan has 0 lesions"
    return [text]


def _liver_median_hu(mask: sitk.Image, image: sitk.Image, region_labels: tuple[int, ...]) -> float:
    """Median HU of the liver with its lesions, on the image grid (nearest neighbour when grids differ)."""
    if not _same_grid(mask, image):
        mask = sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID())
    labels = sitk.GetArrayViewFromImage(mask)
    region = np.zeros(labels.shape, dtype=bool)
    for value in set(region_labels):  # a few comparisons beat np.isin's sort on a large volume
        region |= labels == value
    values = sitk.GetArrayViewFromImage(image)[region]
    return float(np.median(values)) if values.size else math.nan


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    if a.GetSize() != b.GetSize():
        return False
    return all(
        np.allclose(x, y, rtol=_GRID_TOLERANCE, atol=_GRID_TOLERANCE)
        for x, y in (
            (a.GetSpacing(), b.GetSpacing()),
            (a.GetOrigin(), b.GetOrigin()),
            (a.GetDirection(), b.GetDirection()),
        )
    )


def _liver_hu_finding(median: float) -> Finding | None:
    if math.isnan(median) or LIVER_MEDIAN_HU_MIN <= median <= LIVER_MEDIAN_HU_MAX:
        return None
    return Finding(
        f"the liver's median is {median:.0f} HU, outside {LIVER_MEDIAN_HU_MIN:g} to {LIVER_MEDIAN_HU_MAX:g} HU "
        "where a liver lies (unenhanced fatty liver about -50 HU, enhanced liver 100-150 HU): the image is not "
        "in Hounsfield units or the mask belongs to another image",
        "check that the mask was drawn on this image and that the image is in Hounsfield units",
    )


def _join(values) -> str:
    return ", ".join(str(v) for v in values)


# ---------------------------------------------------------------------------------------------
# One scan


def check_scan(
    image_path: Path,
    mask_path: Path | None,
    liver_labels: tuple[int, ...],
    lesion_labels: tuple[int, ...],
    ignore_labels: tuple[int, ...] | None,
) -> ScanCheck:
    """Decode a scan's image and mask in full and collect every problem; never raises for bad input.

    A file that cannot be decoded skips only the checks that need its voxels. The files' hashes
    are the caller's (`fingerprint`): they key the stored check, which is reused while they hold.
    """
    problems: list[Finding] = []
    warnings: list[str] = []
    facts = {
        "min_hu": math.nan,
        "max_hu": math.nan,
        "n_nonfinite": None,
        "labels_present": None,
        "liver_median_hu": math.nan,
    }
    image = _decode_or_problem(Path(image_path), "image", problems)
    if image is not None:
        problems += image_findings(image)
        facts["min_hu"], facts["max_hu"] = image.value_range
        facts["n_nonfinite"] = image.n_nonfinite
    mask = None
    if mask_path is not None:
        mask = _decode_or_problem(Path(mask_path), "mask", problems)
        if mask is not None:
            mask_problems, warnings, mask_facts = mask_findings(
                mask.image,
                image.image if image is not None else None,
                tuple(liver_labels),
                tuple(lesion_labels),
                None if ignore_labels is None else tuple(ignore_labels),
                mask_nonfinite=mask.n_nonfinite,
            )
            problems += mask_problems
            facts.update(mask_facts)
    return ScanCheck(not problems, problems, warnings, facts, image, mask)


def _decode_or_problem(path: Path, what: str, problems: list[Finding]) -> Decoded | None:
    try:
        return decode(path)
    except DamagedFileError as exc:
        problems.append(Finding(f"{what} {path.name} cannot be decoded fully: {exc}", exc.fix))
        return None


def fingerprint_or_none(path: Path | None, limit_s: float = READ_LIMIT_S) -> str | None:
    """The file's fingerprint, its bytes read within `limit_s` (ReadTimedOut otherwise): the first
    read of a scan's files in its run, so a stalled one fails here and the decoders read from the
    page cache; None when it is missing or unreadable (decoding it reports the problem)."""
    if path is None:
        return None
    try:
        return within(limit_s, Path(path), lambda: fingerprint(Path(path)))
    except OSError:
        return None
