"""Decoding a scan's image or mask in full (NIfTI, NRRD, MHA, a DICOM series), so that damage shows
before anything is stored: SimpleITK reads a truncated gzip, or NaN voxels, without an error."""

from __future__ import annotations

import io
import math
import re
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from metorigin.imaging.io import read_image

SPACING_FIX = "re-export the image with its true voxel spacing in millimetres (a positive number on every axis)"


_REREAD_FIX = (
    "copy the file again from its source, or re-export it from the scanner or PACS, "
    "and check that it opens in a viewer; then run the step again"
)


_TRUNCATED = "the file is truncated or was not copied completely"


@dataclass(frozen=True)
class Decoded:
    """One image or mask, decoded in full, with what its reader may have hidden.

    `image` is what the pipeline reads (SimpleITK). `n_nonfinite` counts NaN/inf voxels in the
    file as stored, which for NIfTI differs from `image` because ITK writes 0 in their place.
    `header_spacing` is the voxel spacing as the header stores it (NIfTI pixdim, MHA/MHD
    ElementSpacing), before ITK turns 0 into 1 mm and negatives into positives; None where the
    format gives none. `value_range` is the lowest and highest finite value of `image`, computed
    once, on first use (NaN, NaN when there is none).
    """

    image: sitk.Image
    n_nonfinite: int
    header_spacing: tuple[float, ...] | None = None

    @cached_property
    def value_range(self) -> tuple[float, float]:
        return _finite_range(sitk.GetArrayViewFromImage(self.image))


class DamagedFileError(ValueError):
    """A file whose voxels cannot be decoded in full; the message is the reason in plain words.

    `fix` says what a person can do about it; most damage is a broken copy, so that is the default.
    """

    def __init__(self, reason: str, fix: str = _REREAD_FIX):
        super().__init__(reason)
        self.fix = fix


def decode(path: Path) -> Decoded:
    """Decode an image file or DICOM series folder in full, or raise DamagedFileError."""
    path = Path(path)
    if not path.exists():
        raise DamagedFileError(f"{path} does not exist", fix="check the path in scans.csv")
    if path.is_dir():
        return _decode_dicom(path)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return _decode_nifti(path)
    return _decode_itk(path)


def _decode_nifti(path: Path) -> Decoded:
    """NIfTI: check the bytes ourselves (ITK zero-fills a short file and zeroes NaN), then read with ITK."""
    raw = _nifti_bytes(path)
    header = _nifti_header(raw)
    voxels = _nifti_voxels(raw, header)
    n_nonfinite = count_nonfinite(voxels)
    n_axes = min(int(header["dim"][0]), 3)
    header_spacing = tuple(float(v) for v in header["pixdim"][1 : 1 + n_axes])
    del voxels, raw
    return Decoded(_read_itk(path), n_nonfinite, header_spacing)


def _nifti_bytes(path: Path) -> bytes:
    """The uncompressed file, inflated to the end of every gzip member, which verifies each CRC-32.

    nibabel stops inflating once it has the voxels, so it never sees the checksum of a corrupt file.
    """
    data = path.read_bytes()
    if data[:2] != b"\x1f\x8b":  # ITK (zlib) reads a misnamed uncompressed .nii.gz as it is: so do we
        return data
    parts = []
    while True:
        inflater = zlib.decompressobj(wbits=31)  # 31: gzip wrapper, checks CRC-32 and length
        try:
            parts.append(inflater.decompress(data))
        except zlib.error as exc:
            raise DamagedFileError(
                f"the compressed data is corrupt ({exc}; the file was damaged in storage or transfer)"
            ) from exc
        if not inflater.eof:
            raise DamagedFileError(f"the compressed data ends early ({_TRUNCATED})")
        data = inflater.unused_data
        if not data.strip(b"\0"):  # another gzip member follows, or only padding
            return parts[0] if len(parts) == 1 else b"".join(parts)


def _nifti_header(raw: bytes) -> nib.Nifti1Header:
    """The header as stored (check=False: nibabel would otherwise 'fix' a zero or negative pixdim)."""
    if len(raw) < 348:
        raise DamagedFileError(f"the file is {len(raw)} bytes, shorter than a NIfTI header ({_TRUNCATED})")
    sizes = {int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big")}
    klass = nib.Nifti2Header if 540 in sizes else nib.Nifti1Header
    try:
        return klass.from_fileobj(io.BytesIO(raw), check=False)
    except (ValueError, EOFError, nib.spatialimages.HeaderDataError) as exc:
        raise DamagedFileError(f"its NIfTI header cannot be read ({exc})") from exc


def _nifti_voxels(raw: bytes, header: nib.Nifti1Header) -> np.ndarray:
    """The stored voxel values as a flat view on `raw` (unscaled: scl_slope cannot make NaN)."""
    try:
        dtype = header.get_data_dtype()
    except nib.spatialimages.HeaderDataError as exc:
        raise DamagedFileError(f"its NIfTI header names an unknown data type ({exc})") from exc
    count = math.prod(int(v) for v in header.get_data_shape())
    offset = int(header.get_data_offset())
    want = count * dtype.itemsize
    have = max(len(raw) - offset, 0)
    if have < want:
        raise DamagedFileError(
            f"the file holds {have} of the {want} bytes of voxel data its header promises ({_TRUNCATED})"
        )
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset)


def _decode_itk(path: Path) -> Decoded:
    """MHA, MHD, NRRD: ITK raises on short data and keeps NaN, so its own read is enough."""
    image = _read_itk(path)
    voxels = sitk.GetArrayViewFromImage(image)
    return Decoded(image, count_nonfinite(voxels), _text_header_spacing(path))


def _read_itk(path: Path) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise _itk_error(exc, path) from exc


def _itk_error(exc: RuntimeError, path: Path) -> DamagedFileError:
    """ITK's C++ message turned into a reason a person can act on."""
    text = str(exc)
    spacing = re.search(r"Refusing to change spacing from \[[^\]]*\] to \[([^\]]*)\]", text)
    if spacing:
        return DamagedFileError(
            f"its header gives a voxel spacing of [{spacing.group(1)}] mm, and a spacing must be a positive number",
            fix=SPACING_FIX,
        )
    detail = _itk_detail(text, path)
    if re.search(r"expected \d+ bytes but received \d+|data not read completely|File cannot be read", text):
        return DamagedFileError(
            f"the voxel data ends early or cannot be read ({_TRUNCATED}, or the data file its header names "
            f"is missing; ITK says: {detail})"
        )
    return DamagedFileError(f"ITK cannot read it ({detail})")


def _itk_detail(text: str, path: Path) -> str:
    """The last useful line of an ITK message, without C++ prefixes and stale errno text.

    MetaImage ends a truncated-file error with "Reason: No such file or directory", a leftover
    errno that would send a person looking for a file that is there: such lines are dropped.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("Reason:")]
    line = lines[-1] if lines else "no reason given"
    line = re.sub(r"^(ITK ERROR: \w+\(0x[0-9a-f]+\):|sitk::ERROR:|\[\w+\] \w+:)\s*", "", line)
    return line.replace(str(path), path.name)


def _text_header_spacing(path: Path) -> tuple[float, ...] | None:
    """ElementSpacing as an MHA/MHD header stores it (ITK reads -1 as 1 and refuses 0)."""
    if path.suffix.lower() not in (".mha", ".mhd"):
        return None
    with open(path, "rb") as fh:
        for _ in range(200):
            line = fh.readline(4096).decode("latin-1")
            key, _sep, value = line.partition("=")
            key = key.strip().lower()
            if key == "elementspacing":
                try:
                    return tuple(float(v) for v in value.split())
                except ValueError:
                    return None
            if not line or key == "elementdatafile":
                break
    return None


def _decode_dicom(folder: Path) -> Decoded:
    """A DICOM series: verify each slice file's pixel data, read the series, compare slice counts."""
    frames = _dicom_frames(folder)
    try:
        image = read_image(folder)
    except RuntimeError as exc:
        raise _itk_error(exc, folder) from exc
    except ValueError as exc:  # no series, or more than one
        raise DamagedFileError(str(exc), fix="keep exactly one CT series in the folder") from exc
    depth = image.GetDepth()
    if depth != frames:
        raise DamagedFileError(
            f"the folder holds {frames} DICOM slices but the series reads as {depth}: "
            "GDCM left out slices it could not read"
        )
    return Decoded(image, count_nonfinite(sitk.GetArrayViewFromImage(image)))


def _dicom_frames(folder: Path) -> int:
    """The number of image frames in the folder's DICOM files, after checking each one's pixel data.

    GDCM drops a truncated slice from the series without an error, so each file is read here
    with pydicom, which keeps whatever part of the pixel data is there, and measured.
    """
    frames = 0
    for file in sorted(p for p in folder.iterdir() if p.is_file() and p.name.upper() != "DICOMDIR"):
        try:
            ds = pydicom.dcmread(file)
        except InvalidDicomError as exc:
            if file.suffix.lower() == ".dcm":  # named as a slice, too short or damaged to be one
                raise DamagedFileError(f"DICOM file {file.name} is not a readable DICOM file ({_TRUNCATED})") from exc
            continue  # not DICOM (a README, .DS_Store): GDCM ignores it too
        except Exception as exc:  # pydicom raises many kinds on damaged files
            raise DamagedFileError(f"DICOM file {file.name} cannot be read ({type(exc).__name__}: {exc})") from exc
        frames += _dicom_file_frames(file, ds)
    return frames


def _dicom_file_frames(file: Path, ds) -> int:
    """Frames in one DICOM file; raises when its uncompressed pixel data is shorter than its header says."""
    if "PixelData" not in ds:
        raise DamagedFileError(
            f"DICOM file {file.name} holds no pixel data ({_TRUNCATED}, or it is not an image)",
            fix=f"copy the series again, or remove {file.name} if it is not a slice of the CT",
        )
    n_frames = int(ds.get("NumberOfFrames") or 1)
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and syntax.is_encapsulated:
        return n_frames  # compressed: its length says nothing; GDCM decodes it and the slice count is compared
    bits = int(ds.get("Rows", 0)) * int(ds.get("Columns", 0)) * int(ds.get("SamplesPerPixel", 1))
    want = (bits * int(ds.get("BitsAllocated", 0)) * n_frames + 7) // 8
    have = len(ds.PixelData or b"")
    if have < want:
        raise DamagedFileError(
            f"DICOM file {file.name} holds {have} of the {want} bytes of pixel data its header promises ({_TRUNCATED})"
        )
    return n_frames


def count_nonfinite(voxels: np.ndarray) -> int:
    if voxels.dtype.kind not in "fc":
        return 0
    return int(voxels.size - np.count_nonzero(np.isfinite(voxels)))


def _finite_range(voxels: np.ndarray) -> tuple[float, float]:
    """Lowest and highest finite value; the copy of the finite values happens only when there are others."""
    if voxels.size == 0:
        return math.nan, math.nan
    lo, hi = float(voxels.min()), float(voxels.max())
    if math.isfinite(lo) and math.isfinite(hi):
        return lo, hi
    finite = voxels[np.isfinite(voxels)]
    if finite.size == 0:
        return math.nan, math.nan
    return float(finite.min()), float(finite.max())
