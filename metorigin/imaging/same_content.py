"""Rows of scans.csv whose images hold the same bytes: the later one refused at ingest.

A row that copies another's image under a new scan id was ingested, processed and included, and its
lesions were counted twice in the marts and the study. Ids cannot tell; content can. Hashing every
image at every ingest would read the whole cohort (ingest reads headers only), so only images whose
size (a DICOM folder: the sizes of its files) equals another image's are hashed: on a real cohort
almost none, and a copy always.

The earlier row (by line) is kept. A study that means to include a rescan gives a new image, whose
bytes differ; the same image with another mask is the same scan measured twice, and refused too.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

CHUNK = 1 << 20


def _files(path: Path) -> list[Path]:
    """The regular files of an image: itself, or a DICOM folder's, in a fixed order."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path]


def _size_signature(path: Path) -> tuple[int, ...]:
    return tuple(sorted(p.stat().st_size for p in _files(path)))


def _digest(path: Path) -> str:
    """The bytes of the image's files, whatever they are named (a renamed copy is still a copy)."""
    digests = []
    for file in _files(path):
        digest = hashlib.sha256()
        with open(file, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        digests.append(digest.hexdigest())
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()


def earlier_copies(images: dict[str, Path]) -> dict[str, str]:
    """For each scan (id -> its image, in line order) whose image has the bytes of an earlier
    scan's: that earlier scan's id."""
    by_size: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for scan_id, path in images.items():
        by_size[_size_signature(path)].append(scan_id)
    copies = {}
    for scan_ids in by_size.values():
        if len(scan_ids) < 2:
            continue
        first_of: dict[str, str] = {}
        for scan_id in scan_ids:  # in line order: the first of equal content is the one kept
            digest = _digest(images[scan_id])
            if digest in first_of:
                copies[scan_id] = first_of[digest]
            else:
                first_of[digest] = scan_id
    return copies
