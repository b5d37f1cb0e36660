"""Shared fixtures: a tiny synthetic cohort (generated once per session) and helpers to spoil it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")

from assets.synth import SynthConfig, generate_cohort  # noqa: E402

TINY = SynthConfig(seed=3, scale=0.05, matrix=80, workers=2)


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """8 patients (4 per class), 10 scans: one DICOM series, one reoriented mask, two excluded scans."""
    return generate_cohort(tmp_path_factory.mktemp("tiny") / "cohort", TINY)


@pytest.fixture
def cohort(tiny_cohort, tmp_path) -> Path:
    """A private copy of the tiny cohort that a test may edit: CSVs copied, image folders linked."""
    copy = tmp_path / "cohort"
    copy.mkdir()
    for entry in tiny_cohort.iterdir():
        if entry.is_file():
            shutil.copy(entry, copy / entry.name)
        else:
            (copy / entry.name).symlink_to(entry, target_is_directory=True)
    return copy
