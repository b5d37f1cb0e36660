"""Atomic file writes and content digests: the two file habits every step of the store shares."""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: Path, keep_suffix: bool = False) -> Iterator[Path]:
    """A hidden temporary path beside `path` to write to, renamed over `path` when the block succeeds.

    A killed writer leaves the old file or the new one, never half of one; the temporary file is
    removed when the block fails. Its name ends in `.tmp`, so globs such as `lake/x/*.parquet`
    never see it, unless `keep_suffix` is asked for by writers that pick the format from the
    name (SimpleITK's `.nii.gz`, numpy's `.npz`), which write outside the lake.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = f".{os.getpid()}.tmp.{path.name}" if keep_suffix else f".{path.name}.{os.getpid()}.tmp"
    tmp = path.with_name(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_digest(path: Path, length: int = 12) -> str:
    """The start of a file's sha256, read in blocks (images and checkpoints can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]
