"""Helpers for tests that spoil a cohort on purpose."""

from __future__ import annotations

from pathlib import Path

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


def replace_in(csv_path: Path, old: str, new: str) -> None:
    text = csv_path.read_text()
    assert old in text, f"{old!r} not in {csv_path}"
    csv_path.write_text(text.replace(old, new, 1))
