"""metorigin as an installed package: the wheel holds one top-level package with everything it reads,
and runs from a folder that is not the checkout. And a new model arm is one module: the wheel is
built with a toy arm (tests/data/arms/burden.py) copied into metorigin/arms/ and nothing else
changed, and the arm is found in every place an arm's models reach.

Cheap by design: the wheel is built without build isolation (the venv's setuptools and dbt) and
installed `--no-deps` into a new virtual environment that sees the pinned packages of this one
through a `.pth` line, so nothing is downloaded. That line adds the directory only: its `.pth` files
(the editable install's finder, which maps `metorigin` to the checkout) are not processed, and the
test checks that the package imported is the wheel's.
"""

from __future__ import annotations

import csv
import io
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
TOY_ARM = CHECKOUT / "tests" / "data" / "arms" / "burden.py"
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
    generated = [
        source / "metorigin" / "sql" / "models" / "results" / "arms.yml",
        source / "metorigin" / "sql" / "macros" / "arm_tables.sql",
    ]
    for path in generated:  # what the build writes itself, from the arms it finds
        path.unlink(missing_ok=True)
    shutil.copy(TOY_ARM, source / "metorigin" / "arms" / TOY_ARM.name)  # the one new module
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


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> tuple[Path, Path, dict]:
    """The wheel in a new venv (over the pinned packages), and an empty folder to work in."""
    root = tmp_path_factory.mktemp("installed")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (site / "pinned.pth").write_text(sysconfig.get_path("purelib") + "\n")  # the pinned stack, not its .pth files
    _run(
        [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", wheel],
        root,
        {**os.environ},
    )
    for tool in ("dbt", "dagster"):  # what the wheel's dependencies would put beside its python
        (venv / "bin" / tool).symlink_to(BIN / tool)
    work = root / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METORIGIN_", "DAGSTER_HOME", "PYTHON"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return venv, work, env


@pytest.fixture(scope="module")
def study_run(installed) -> str:
    """`metorigin run` of the whole pipeline on a small synthetic cohort, from the installed wheel."""
    venv, work, env = installed
    metorigin = venv / "bin" / "metorigin"
    _run([metorigin, "synth", "--out", "cohort", "--scale", "0.1", "--matrix", "48", "--workers", "2"], work, env)
    (work / "study.yaml").write_text(STUDY_FILE)
    return _run([metorigin, "run", "--cohort", "cohort", "--store", "store", "--study", "study.yaml"], work, env).stdout


def _sql(installed, query: str) -> list[dict]:
    venv, work, env = installed
    out = _run([venv / "bin" / "metorigin", "sql", "--store", "store", "--csv", query], work, env).stdout
    return list(csv.DictReader(io.StringIO(out)))


def test_installed_wheel_runs_the_study_from_an_empty_folder(installed, study_run):
    venv, work, env = installed
    where = _run([venv / "bin" / "python", "-c", "import metorigin; print(metorigin.__file__)"], work, env).stdout
    assert Path(where.strip()).is_relative_to(venv), where  # the wheel's copy, not the checkout's

    metorigin = venv / "bin" / "metorigin"
    # A shipped example, written out for editing, names the wheel's radiomics parameters (`default`).
    _run([metorigin, "study", "--example", "paper", "--out", "paper.yaml"], work, env)
    effective = _run([metorigin, "study", "--study", "paper.yaml"], work, env).stdout
    assert f"params_file: {venv}" in effective.replace(str(venv.resolve()), str(venv)), effective[:3000]
    assert "Tables 1-3: metorigin tables --store" in study_run, study_run[-3000:]
    tables = _run([metorigin, "tables", "--store", "store"], work, env).stdout
    assert all(title in tables for title in ("Table 1", "Table 2", "Table 3")), tables[:2000]
    report = next((work / "store").rglob("report.html")).read_text(encoding="utf-8")
    assert "git " in report or "0.1.0" in report  # the code's version, read from the wheel's build record
    assert not list(venv.rglob("metorigin/sql/target/*-*"))  # dbt's working folders went under the store


def test_a_new_arm_is_one_module_found_everywhere_its_models_go(installed, study_run):
    venv, work, env = installed
    metorigin = venv / "bin" / "metorigin"
    # Table 3 as SQL and in print, the per-lesion probabilities and the evaluation of every row.
    (row,) = _sql(installed, "select model_id, model, auc from model_metrics where arm = 'burden'")
    assert row["model"] == "burden_count" and 0 <= float(row["auc"]) <= 1
    assert row["model"] in _run([metorigin, "tables", "--store", "store"], work, env).stdout
    kinds = _sql(installed, "select evaluation, count(*) as n from lesion_predictions where arm = 'burden' group by 1")
    assert {k["evaluation"] for k in kinds} == {"test", "out_of_fold"}
    assert (
        _sql(installed, f"select count(*) as n from metric_intervals where model_id = '{row['model_id']}'")[0]["n"]
        != "0"
    )
    # The model registry, with the arm's file and card.
    (registered,) = _sql(installed, "select arm, model_file from models where arm = 'burden'")
    assert registered["model_file"].startswith("artifacts/models/burden/")
    assert row["model_id"] in _run([metorigin, "models", "list", "--store", "store"], work, env).stdout
    # The report: its row in Table 3, and the section the arm declares, with its figure's files.
    report = next((work / "store").rglob("report.html"))
    assert "burden_count" in report.read_text(encoding="utf-8") and "Burden arm" in report.read_text(encoding="utf-8")
    assert (report.parent / "burden_auc.svg").is_file() and (report.parent / "burden_auc.csv").is_file()
    # Promoted, it scores the scans: the next run scores every scan with it, nothing refitted.
    _run(
        [metorigin, "models", "promote", row["model_id"], "--why", "the toy arm's test", "--store", "store"], work, env
    )
    _run([metorigin, "run", "--cohort", "cohort", "--store", "store", "--study", "study.yaml"], work, env)
    scored = _sql(
        installed, "select count(distinct scan_id) as scans, count(*) as n from scan_predictions where arm = 'burden'"
    )
    included = _sql(
        installed,
        "select count(distinct l.scan_id) as n from lesions l join scans s using (scan_id) "
        "where l.included and s.included",
    )
    assert scored[0]["scans"] == included[0]["n"] != "0"
    (call,) = _sql(installed, f"select count(*) as n from patient_predictions where model_id = '{row['model_id']}'")
    assert call["n"] != "0"
