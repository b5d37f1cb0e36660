"""Exception types for bad input.

One type per failure kind, so callers (the asset checks, the CLI, tests) can tell a missing column
from an unreadable image without parsing text. Every message names the file, the row and the fix,
because the person reading it is a researcher with a spreadsheet open, not a developer.
"""

from __future__ import annotations


class MetoriginError(Exception):
    """Base for every error metorigin raises on purpose."""


class CohortError(MetoriginError):
    """A problem with the cohort folder, located as precisely as we can, with the fix."""

    kind = "cohort"

    def __init__(self, file: str, problem: str, fix: str, row: int | None = None, row_id: str | None = None):
        self.file = file
        self.row = row
        self.row_id = row_id
        self.problem = problem
        self.fix = fix
        super().__init__(self.message)

    @property
    def where(self) -> str:
        if self.row is None:
            return self.file
        ident = f" ({self.row_id})" if self.row_id else ""
        return f"{self.file} line {self.row}{ident}"

    @property
    def message(self) -> str:
        return f"{self.where}: {self.problem}. Fix: {self.fix}"

    def as_record(self) -> dict:
        return {
            "file": self.file,
            "row": self.row,
            "row_id": self.row_id,
            "kind": self.kind,
            "problem": self.problem,
            "fix": self.fix,
            "message": self.message,
        }


class CohortFileError(CohortError):
    """The CSV itself is missing or unusable; nothing in it can be trusted."""

    kind = "cohort_file"


class MissingColumnError(CohortError):
    kind = "missing_column"


class InvalidValueError(CohortError):
    kind = "invalid_value"


class DuplicateIdError(CohortError):
    kind = "duplicate_id"


class DuplicateContentError(CohortError):
    """A row whose image has the bytes of an earlier row's: the same scan, counted twice."""

    kind = "duplicate_content"


class UnknownPatientError(CohortError):
    kind = "unknown_patient"


class PathOutsideCohortError(CohortError):
    kind = "path_outside_cohort"


class ImageUnreadableError(CohortError):
    """Missing file, corrupt file, or a folder that is not exactly one DICOM series."""

    kind = "image_unreadable"


class ImageGeometryError(CohortError):
    """The header's spacing or direction cannot place voxels in space (zero spacing, sheared axes)."""

    kind = "image_geometry"


class MaskGeometryError(CohortError):
    """The mask does not cover the image's physical space, so no resampling can align it."""

    kind = "mask_geometry"


class ScanProcessingError(MetoriginError):
    """One scan cannot go through a pipeline step; the other scans are unaffected."""

    def __init__(self, scan_id: str, step: str, problem: str, fix: str):
        self.scan_id = scan_id
        self.step = step
        self.problem = problem
        self.fix = fix
        super().__init__(f"scan {scan_id} ({step}): {problem}. Fix: {fix}")


class StudyFileError(MetoriginError):
    """A study file that cannot be used: refused before any work, with the key path and the fix."""

    def __init__(self, file: str, key: str, problem: str, fix: str, more: int = 0):
        self.file, self.key, self.problem, self.fix = file, key, problem, fix
        where = f"{file}: {key}" if key else file
        extra = f" ({more} more problem(s) after this one)" if more else ""
        super().__init__(f"{where}: {problem}. Fix: {fix}{extra}")


class StoreVersionError(MetoriginError):
    """The store was written by a newer metorigin than this one."""


class StoreStudyMismatch(MetoriginError):
    """The store was built under another study; mixing two protocols in one store would make every
    number ambiguous."""


class ClusterError(MetoriginError):
    """A Dask cluster the per-scan steps cannot use: unreachable, a worker blind to the store, or no
    worker offering a resource a step needs. The message names what is missing and the fix."""
