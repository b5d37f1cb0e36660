"""metorigin as an installed package: the wheel holds one top-level package with everything it reads,
and runs from a folder that is not the checkout.

Cheap by design: the wheel is built without build isolation (the venv's setuptools and dbt) and
installed `--no-deps` into a new virtual environment that sees the pinned packages of this one
through a `.pth` line, so nothing is downloaded. That line adds the directory only: its `.pth` files
(the editable install's finder, which maps `metorigin` to the checkout) are not processed, and the
test checks that the package imported is the wheel's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHECKOUT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STUDY_FILE = (
    "base: quick\n"
    "models: {classifiers: [logistic_regression, naive_bayes], resamplers: [undersampling], cv_repeats: 1,\n"
    "         cv_folds: 3, bootstrap_resamples: 100, importance_repeats: 2}\n"
    "densenet: {epochs: 1, max_train_images_per_epoch: 50}\n"
    "robustness: {permutations: 1, split_repeats: 1}\n"
)
SHIPPED = (
    "metorigin/dagster.yaml",
    "metorigin/_build_info.json",
    "metorigin/sql/dbt_project.yml",
    "metorigin/sql/profiles.yml",
    "metorigin/sql/target/manifest.json",
    "metorigin/imaging/radiomics_params.yaml",
    "metorigin/imaging/ibsi_phantom/phantom.nii.gz",
    "metorigin/examples/paper.yaml",
    "metorigin/examples/cluster/slurm.yaml",
)


def _run(command: list, cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, encoding="utf-8", timeout=timeout)
    assert result.returncode == 0, (
        f"{command}: exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (the build writes the dbt manifest beside them)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(CHECKOUT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "target", "logs", "_build_info.json")
    shutil.copytree(CHECKOUT / "metorigin", source / "metorigin", ignore=ignore)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METORIGIN_", "DAGSTER_HOME"))}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", root, "."], source, env)
    (built,) = root.glob("metorigin-*.whl")
    return built


def test_the_wheel_holds_one_package_and_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {
        "metorigin",
        f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info",
    }
    assert [name for name in SHIPPED if name not in names] == []
    assert not [
        name for name in names if name.startswith("metorigin/sql/target/") and not name.endswith("manifest.json")
    ]


def test_installed_wheel_runs_the_study_from_an_empty_folder(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (site / "pinned.pth").write_text(sysconfig.get_path("purelib") + "\n")  # the pinned stack, not its .pth files
    _run(
        [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", wheel],
        tmp_path,
        {**os.environ},
    )
    for tool in ("dbt", "dagster"):  # what the wheel's dependencies would put beside its python
        (venv / "bin" / tool).symlink_to(BIN / tool)

    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METORIGIN_", "DAGSTER_HOME", "PYTHON"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    where = _run([venv / "bin" / "python", "-c", "import metorigin; print(metorigin.__file__)"], work, env).stdout
    assert Path(where.strip()).is_relative_to(venv), where  # the wheel's copy, not the checkout's

    metorigin = venv / "bin" / "metorigin"
    # A shipped example, written out for editing, names the wheel's radiomics parameters (`default`).
    _run([metorigin, "study", "--example", "paper", "--out", "paper.yaml"], work, env)
    effective = _run([metorigin, "study", "--study", "paper.yaml"], work, env).stdout
    assert f"params_file: {venv}" in effective.replace(str(venv.resolve()), str(venv)), effective[:3000]
    _run([metorigin, "synth", "--out", "cohort", "--scale", "0.1", "--matrix", "48", "--workers", "2"], work, env)
    (work / "study.yaml").write_text(STUDY_FILE)
    ran = _run([metorigin, "run", "--cohort", "cohort", "--store", "store", "--study", "study.yaml"], work, env)
    assert "Tables 1-3: metorigin tables --store" in ran.stdout, ran.stdout[-3000:]
    tables = _run([metorigin, "tables", "--store", "store"], work, env).stdout
    assert all(title in tables for title in ("Table 1", "Table 2", "Table 3")), tables[:2000]
    report = next((work / "store").rglob("report.html")).read_text(encoding="utf-8")
    assert "git " in report or "0.1.0" in report  # the code's version, read from the wheel's build record
    assert not list(venv.rglob("metorigin/sql/target/*-*"))  # dbt's working folders went under the store
