"""Image reading for every format the cohort contract allows: NIfTI, NRRD, MHA, or one DICOM series.

Headers are read without pixel data wherever the format allows it, because validating a cohort
should cost seconds, not a full decode of every volume. DICOM is the exception: a series' geometry
is only known once all its slices are sorted, which SimpleITK does while reading.
"""

from __future__ import annotations

import re
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import SimpleITK as sitk

from metorigin.core.study import CONTRAST_PHASES

# Only these DICOM attributes are ever read from headers. Identifying tags (names, birth dates,
# hospital IDs) are never touched, so they cannot leak into the store.
DICOM_ATTRIBUTES = ("ConvolutionKernel", "SliceThickness", "SeriesDescription", "ProtocolName", "ContrastBolusAgent")


# Free-text series descriptions seen in practice, mapped to the contract's phase names. Order
# matters: "portal venous" must win over a bare "venous" in "arterial/venous" style descriptions.
_PHASE_PATTERNS = (
    ("portal_venous", re.compile(r"portal|\bpv\b|\bpvp\b|venous|\bven\b", re.I)),
    ("arterial", re.compile(r"arter|\bart\b", re.I)),
    ("delayed", re.compile(r"delay|late|equilib", re.I)),
    ("native", re.compile(r"native|nativ|non[- ]?contrast|unenhanced|plain|\bnc\b", re.I)),
)


READ_LIMIT_S = 300  # the study file's `cluster.read_timeout_s`, by default
READ_LIMIT_FIX = (
    "check the disk or network share the cohort lies on (a stalled mount, a file being copied), then run "
    "again; for files that are just slow to read, raise `cluster.read_timeout_s` in the study file"
)
T = TypeVar("T")
_IN_FLIGHT: dict[str, threading.Thread] = {}  # path -> a read given up but not returned (blocked in the kernel)


class ReadTimedOut(ValueError):
    """A read of a scan's file that did not finish within the limit; that scan fails, not the run."""


def within(limit_s: float, path: Path, read: Callable[[], T]) -> T:
    """`read()` in a daemon thread, given up after `limit_s` seconds with ReadTimedOut.

    A read from a stalled network mount blocks in the kernel, where no signal or exception reaches
    it: the thread is left blocked (a daemon, it never keeps the process alive) and the scan fails
    with the path, while the other scans go on. `read` must do its blocking in Python's own file
    calls (they release the GIL); ITK's may hold it, so the bytes are read here first and ITK then
    decodes them from the page cache."""
    key = str(path)
    blocked = _IN_FLIGHT.get(key)
    if blocked is not None and blocked.is_alive():  # a sensor's earlier tick, or an earlier scan's step
        raise ReadTimedOut(f"reading {path.name} did not return the last time either, and was not tried again")
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = read()
        except BaseException as error:  # handed to the caller, as if `read` ran here
            box["error"] = error

    worker = threading.Thread(target=run, name=f"metorigin read {path.name}", daemon=True)
    worker.start()
    worker.join(limit_s)
    if worker.is_alive():
        _IN_FLIGHT[key] = worker  # one abandoned thread per path, however often it is asked for
        raise ReadTimedOut(f"reading {path.name} took longer than {limit_s:g} s and was given up")
    _IN_FLIGHT.pop(key, None)
    if "error" in box:
        raise box["error"]
    return box["value"]


def _first_bytes(path: Path) -> None:
    """What ITK reads for a header, read first under the time limit: the start of a file, or every
    file of a series folder whole (GDCM opens each to sort the series, and the series is read)."""
    if not path.exists():
        raise ValueError("the file does not exist")
    _refuse_special(path)
    whole = path.is_dir()
    try:
        for file in sorted(p for p in path.iterdir() if p.is_file()) if whole else [path]:
            with open(file, "rb") as handle:
                while handle.read(1 << 20) and whole:
                    pass
    except OSError as error:  # no permission, an I/O error: that row's problem, not the cohort's
        raise ValueError(f"it cannot be read ({error.strerror or error})") from None


@dataclass(frozen=True)
class ImageInfo:
    """Geometry and acquisition metadata of one image, enough to validate it against the contract."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    pixel_type: str
    header: dict[str, str] = field(default_factory=dict)


def normalise_phase(text: str | None) -> str | None:
    """Map a phase as people write it ("Portal venous", "PV", "art") to a contract phase name."""
    if text is None:
        return None
    text = str(text).strip()
    if not text:
        return None
    key = text.lower().replace("-", "_").replace(" ", "_")
    if key in CONTRAST_PHASES:
        return key
    for phase, pattern in _PHASE_PATTERNS:
        if pattern.search(text):
            return phase
    return None


def special_file(path: Path) -> str | None:
    """What `path` is when it is neither a regular file nor a folder (a FIFO, a socket, a device),
    else None. Opening a FIFO waits for a writer for ever, and a device may never end: neither is
    an image, and a scan listing one must be refused before anything reads it."""
    mode = path.stat().st_mode
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def _refuse_special(path: Path) -> None:
    """A path that is not a regular file or folder, or a folder holding one (GDCM opens every file of a
    series folder), refused with what it is."""
    try:
        entries = [path, *path.iterdir()] if path.is_dir() else [path]
    except OSError as error:
        raise ValueError(f"the folder cannot be listed ({error.strerror})") from None
    for entry in entries:
        try:
            kind = special_file(entry)
        except OSError:  # a broken link or a loop inside a series folder: GDCM skips it too
            continue
        if kind:
            where = "it is" if entry == path else f"its entry {entry.name!r} is"
            raise ValueError(f"{where} {kind}, not a regular file: reading it would never end")


def _dicom_series_files(folder: Path) -> list[str]:
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise ValueError("the folder holds no DICOM series")
    if len(series_ids) > 1:
        raise ValueError(f"the folder holds {len(series_ids)} DICOM series; it must hold exactly one")
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0]))


def _dicom_header(first_file: str) -> dict[str, str]:
    import pydicom

    ds = pydicom.dcmread(first_file, stop_before_pixels=True, specific_tags=list(DICOM_ATTRIBUTES))
    header = {}
    for name in DICOM_ATTRIBUTES:
        value = ds.get(name)
        if value is not None and str(value).strip():
            header[name] = str(value).strip()
    return header


def _info_from_image(image: sitk.Image | sitk.ImageFileReader, header: dict[str, str]) -> ImageInfo:
    size = tuple(int(v) for v in image.GetSize())
    if len(size) != 3:
        raise ValueError(f"the image has {len(size)} dimensions; a CT volume must have 3")
    pixel_type = (
        sitk.GetPixelIDValueAsString(image.GetPixelID())
        if isinstance(image, sitk.ImageFileReader)
        else image.GetPixelIDTypeAsString()
    )
    return ImageInfo(
        size=size,
        spacing=tuple(float(v) for v in image.GetSpacing()),
        origin=tuple(float(v) for v in image.GetOrigin()),
        direction=tuple(float(v) for v in image.GetDirection()),
        pixel_type=pixel_type,
        header=header,
    )


def read_image_info(path: Path, limit_s: float = READ_LIMIT_S) -> ImageInfo:
    """Geometry and header metadata of an image file or DICOM series folder.

    Raises ValueError with a plain-language reason when the path is not a readable 3-D image
    (ReadTimedOut when its first bytes take longer than `limit_s` to read).
    """
    path = Path(path)
    within(limit_s, path, lambda: _first_bytes(path))
    if path.is_dir():
        files = _dicom_series_files(path)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        try:
            image = reader.Execute()
        except RuntimeError as exc:
            raise ValueError(f"the DICOM series cannot be read ({_itk_reason(exc)})") from exc
        return _info_from_image(image, _dicom_header(files[0]))
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ValueError(f"the file is not a readable image ({_itk_reason(exc)})") from exc
    return _info_from_image(reader, {})


def read_image(path: Path) -> sitk.Image:
    """The full image, from a file or a DICOM series folder."""
    path = Path(path)
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(_dicom_series_files(path))
        return reader.Execute()
    return sitk.ReadImage(str(path))


def _itk_reason(exc: Exception) -> str:
    """ITK exceptions carry a multi-line C++ trace; the last non-empty line is the useful part."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__
