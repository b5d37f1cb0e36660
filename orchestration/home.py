"""The Dagster instance folder ($DAGSTER_HOME) that the CLI, `make demo` and `make ui` share."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

REPO_ROOT = Path(__file__).resolve().parents[1]


def prepare_dagster_home(home: Path) -> Path:
    """Create the instance folder with our dagster.yaml and the UI's first-run modal dismissed."""
    home = Path(home).absolute()
    (home / ".nux").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    return home


def get_instance() -> dg.DagsterInstance:
    """The persistent instance in $DAGSTER_HOME when set (runs show in the UI), else an ephemeral one."""
    home = os.environ.get("DAGSTER_HOME")
    if home:
        prepare_dagster_home(Path(home))
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()
