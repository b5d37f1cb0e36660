"""The build step pyproject.toml cannot declare: what the wheel must carry beyond the sources.

`build_py` adds generated files to the package before it is copied into the wheel:
- the model arms' dbt sources and the lists Table 3's unions iterate over (one arm per module of
  `metorigin/arms/`), written by `metorigin/core/arm_sources.py`, loaded here by its path: the
  build environment has dbt but none of the platform's dependencies, so the package cannot be imported;
- `metorigin/sql/target/manifest.json`: dagster-dbt builds the feature store's assets from the dbt
  manifest, so an installed package must ship one (it never writes inside itself). `dbt parse`
  runs here, with the dbt that `build-system.requires` installs.
- `metorigin/_build_info.json`: the version and the git commit the wheel was built from, which the
  study report records (an installed package has no checkout to ask).
A checkout (`pip install -e .`, `make install`) gets both too; there the code asks git for the
commit itself, and re-parses the dbt project when an edit made the manifest stale.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PACKAGE = HERE / "metorigin"


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(HERE), "describe", "--always", "--dirty=+"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""  # a source tree without git (an sdist): the version alone


def _write_arm_files() -> None:
    spec = importlib.util.spec_from_file_location("arm_sources", PACKAGE / "core" / "arm_sources.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_arm_files(PACKAGE / "sql", module.arm_module_names(PACKAGE / "arms"))


def _parse_dbt_project() -> None:
    sql = PACKAGE / "sql"
    dbt = Path(sys.executable).with_name("dbt")
    command = [str(dbt) if dbt.exists() else "dbt", "parse", "--quiet", "--project-dir", ".", "--profiles-dir", "."]
    subprocess.run(command, cwd=sql, check=True, env={"PATH": str(Path(sys.executable).parent), "HOME": str(sql)})


class BuildPy(build_py):
    def run(self):
        _write_arm_files()
        _parse_dbt_project()
        (PACKAGE / "_build_info.json").write_text(json.dumps({"commit": _commit()}) + "\n")
        super().run()


setup(cmdclass={"build_py": BuildPy})
