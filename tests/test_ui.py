"""The Definitions load where users load them: `dagster definitions validate` (the web UI, with its
daemon, is tested in test_daemon.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from metorigin.core.config import RunConfig

BIN = Path(sys.executable).parent


def _env(cohort, store, home) -> dict:
    RunConfig(cohort=str(cohort), store=str(store)).write_for_instance(home)  # what `metorigin ui` writes
    env = dict(os.environ, DAGSTER_HOME=str(home))
    env["DAGSTER_DISABLE_TELEMETRY"] = "true"
    return env


@pytest.mark.slow
def test_definitions_validate(cohort, tmp_path):
    result = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "metorigin.definitions"],
        capture_output=True,
        encoding="utf-8",
        timeout=300,
        env=_env(cohort, tmp_path / "s", tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "All code locations passed validation" in result.stderr + result.stdout
