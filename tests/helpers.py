"""Helpers for tests: cohorts spoilt on purpose, and synthetic training matrices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from metorigin.core.study import LabelSettings

# The imaging and feature-store tests stop before the models: the tiny cohorts they use are too
# small to train on, and the models have their own tests (test_study.py).
NOT_STUDY = "not group:study"


def append_row(csv_path: Path, row: str) -> int:
    """Append a CSV row and return its line number (as error messages report it)."""
    text = csv_path.read_text()
    if not text.endswith("\n"):
        text += "\n"
    csv_path.write_text(text + row + "\n")
    return len(csv_path.read_text().splitlines())


def another_scan_like(image: Path, copy: Path) -> Path:
    """Write a scan on `image`'s grid whose voxels differ by one HU, so that ingest takes it for another
    scan (an exact copy is refused: it would count the same scan twice)."""
    sitk.WriteImage(sitk.ReadImage(str(image)) + 1, str(copy))
    return copy


def replace_in(csv_path: Path, old: str, new: str) -> None:
    text = csv_path.read_text()
    assert old in text, f"{old!r} not in {csv_path}"
    csv_path.write_text(text.replace(old, new, 1))


def noise_matrix(
    patients: int = 40, lesions: int = 3, features: int = 300, seed: int = 0, signal: float = 0.0
) -> pd.DataFrame:
    """A training matrix with labels by patient (alternating classes) and features that know nothing
    about them, except `f000`, shifted by `signal` standard deviations in the positive class."""
    classes = LabelSettings().classes
    rng = np.random.default_rng(seed)
    rows = [
        (f"P{p:02d}-{k}", f"S{p:02d}", f"P{p:02d}", classes[p % 2]) for p in range(patients) for k in range(lesions)
    ]
    ids = pd.DataFrame(rows, columns=["lesion_id", "scan_id", "patient_id", "label"])
    values = pd.DataFrame(rng.normal(size=(len(ids), features)), columns=[f"f{i:03d}" for i in range(features)])
    values["f000"] += signal * (ids["label"] == LabelSettings().positive).to_numpy()
    return pd.concat([ids, values], axis=1)
