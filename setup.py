"""The build step pyproject.toml cannot declare: what the wheel must carry beyond the sources.

`build_py` adds two generated files to the package before it is copied into the wheel:
- `metorigin/sql/target/manifest.json`: dagster-dbt builds the feature store's assets from the dbt
  manifest, so an installed package must ship one (it never writes inside itself). `dbt parse`
  runs here, with the dbt that `build-system.requires` installs.
- `metorigin/_build_info.json`: the version and the git commit the wheel was built from, which the
  study report records (an installed package has no checkout to ask).
A checkout (`pip install -e .`, `make install`) gets both too; there the code asks git for the
commit itself, and re-parses the dbt project when an edit made the manifest stale.
"""

from __future__ import annotations

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


def _parse_dbt_project() -> None:
    sql = PACKAGE / "sql"
    dbt = Path(sys.executable).with_name("dbt")
    command = [str(dbt) if dbt.exists() else "dbt", "parse", "--quiet", "--project-dir", ".", "--profiles-dir", "."]
    subprocess.run(command, cwd=sql, check=True, env={"PATH": str(Path(sys.executable).parent), "HOME": str(sql)})


class BuildPy(build_py):
    def run(self):
        _parse_dbt_project()
        (PACKAGE / "_build_info.json").write_text(json.dumps({"commit": _commit()}) + "\n")
        super().run()


setup(cmdclass={"build_py": BuildPy})
