"""Atomic file and folder writes, and content digests: the two file habits every step of the store shares."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil


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


@contextmanager
def atomic_folder(folder: Path) -> Iterator[Path]:
    """A hidden temporary folder beside `folder` to fill, renamed to `folder` when the block succeeds.

    A report of 30-odd files killed half-way must not look like a report: readers see the whole
    folder or none. A failed block removes its folder; one a killed process of this host left (its
    pid gone) is removed by the next writer in the same parent (another host's never: its pids are
    not ours to judge). An existing `folder` is replaced: moved aside, the new one renamed in, the
    old one removed, so that a reader never finds neither."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    for left in folder.parent.glob(".*.tmp"):
        found = _UNFINISHED.fullmatch(left.name)
        if found and found["host"] == _HOST and left.is_dir() and not psutil.pid_exists(int(found["pid"])):
            shutil.rmtree(left, ignore_errors=True)
    work, old = (folder.with_name(f".{folder.name}{part}.{_HOST}.{os.getpid()}.tmp") for part in ("", "-old"))
    for path in (work, old):
        shutil.rmtree(path, ignore_errors=True)
    work.mkdir()
    try:
        yield work
        if folder.exists():
            folder.rename(old)
        work.rename(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
_UNFINISHED = re.compile(r"\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.tmp")


def file_digest(path: Path, length: int = 12) -> str:
    """The start of a file's sha256, read in blocks (images and checkpoints can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]
