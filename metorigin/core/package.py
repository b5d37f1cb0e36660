"""The files the package ships, named by the package's own path, never the checkout's.

The dbt project, the instance's `dagster.yaml`, the radiomics parameter file, the IBSI phantom and
the example study files are package data (pyproject.toml), so an installed wheel finds them where
a checkout does. Nothing writes here: dbt's working folders go under the store, and a store's
instance gets a copy of `dagster.yaml`.
"""

from __future__ import annotations

import json
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
DAGSTER_YAML = PACKAGE_DIR / "dagster.yaml"
DBT_PROJECT_DIR = PACKAGE_DIR / "sql"
EXAMPLES_DIR = PACKAGE_DIR / "examples"
RADIOMICS_PARAMS = PACKAGE_DIR / "imaging" / "radiomics_params.yaml"
ARMS_DIR = PACKAGE_DIR / "arms"  # one module per model arm (metorigin/arms/__init__.py)
BUILD_INFO = PACKAGE_DIR / "_build_info.json"  # written by setup.py when the wheel is built


def in_checkout() -> bool:
    """True when the code runs from a source tree (an editable install): it may then re-prepare its
    own generated files (the dbt manifest), which an installed package never does."""
    return (PACKAGE_DIR.parent / "pyproject.toml").is_file() and (PACKAGE_DIR.parent / "setup.py").is_file()


def example_studies() -> dict[str, Path]:
    """The shipped study files by name (`paper`, `sharp_kernels_colorectal_positive`, `cluster/slurm`)."""
    return {
        str(path.relative_to(EXAMPLES_DIR).with_suffix("")): path
        for path in sorted(EXAMPLES_DIR.rglob("*.yaml"))
        if path.name != "dagster.yaml"
    }


@lru_cache(maxsize=1)
def code_version() -> str:
    """The package version and the commit it was built from: asked of git in a checkout (with `+`
    when edited), read from the build's record in an installed wheel."""
    try:
        version = metadata.version("metorigin")
    except metadata.PackageNotFoundError:
        version = "unknown"
    commit = _checkout_commit() if in_checkout() else _built_commit()
    return f"{version} (git {commit})" if commit else version


def _checkout_commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(PACKAGE_DIR.parent), "describe", "--always", "--dirty=+"],
            text=True,
            capture_output=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return _built_commit()


def _built_commit() -> str:
    try:
        return str(json.loads(BUILD_INFO.read_text()).get("commit", ""))
    except (OSError, ValueError):
        return ""
