"""Patient and scan identifiers: the safe set, and paths built from them that stay in the store.

An id becomes a file name (`lake/lesions/<scan>.parquet`, `artifacts/segmentations/<scan>.nii.gz`)
and a Dagster partition key, and Dagster accepts `/` and `..` in keys: a scan id of
`../../../../tmp/x` wrote files outside the store. So ids are restricted to a set that is a plain
file name on every file system, checked at ingest with the row and the fix, and every path the
store builds from one is checked again where it is built.
"""

from __future__ import annotations

import re
from pathlib import Path

SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")  # an id with a suffix: never '..', never a separator
SAFE_ID_RULE = "letters, digits, '-', '_' and '.', at most 128 characters, not starting with '.'"


class UnsafePathError(ValueError):
    """A path built from an id would leave the folder it belongs in: a bug or a hostile id."""


def id_problem(value: str, column: str) -> tuple[str, str] | None:
    """Why `value` cannot be an id (problem, fix), or None when it can."""
    if value.lower() == "all":  # the lake's file name for an unpartitioned table (store.UNPARTITIONED)
        return f"{column} 'all' is reserved", "choose another id, e.g. 'all_1'"
    if SAFE_ID.fullmatch(value):
        return None
    return (
        f"{column} {value!r} has characters an id cannot have",
        f"use only {SAFE_ID_RULE} (ids become file names), e.g. {_suggestion(value)!r}",
    )


def _suggestion(value: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", value).lstrip(".")
    return cleaned[:128] or "P001"


def inside(root: Path, *parts: str) -> Path:
    """root/parts..., refused when any part is not a safe name or the result leaves `root`."""
    for part in parts:
        if not SAFE_NAME.fullmatch(part):
            raise UnsafePathError(f"{part!r} is not a safe file name ({SAFE_ID_RULE})")
    path = root.joinpath(*parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise UnsafePathError(f"{path} is outside {root}")
    return path
