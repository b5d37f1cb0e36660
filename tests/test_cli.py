"""The `metorigin` command as a user runs it: separate processes, real files, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

# Every test here runs the pipeline or a subprocess: `make test`, not `make test-fast`.
pytestmark = pytest.mark.slow

METORIGIN = str(Path(sys.executable).with_name("metorigin"))


def _cli(*args, env=None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("METORIGIN_", "DAGSTER_HOME"))}
    environment.update(env or {})
    return subprocess.run(
        [METORIGIN, *map(str, args)], capture_output=True, encoding="utf-8", timeout=600, env=environment
    )


def test_sql_errors_are_clear(tmp_path):
    missing = _cli("sql", "--store", tmp_path / "nowhere", "select 1")
    assert missing.returncode == 2 and "run `metorigin run` first" in missing.stderr


def test_run_refuses_a_folder_without_scans_csv(tmp_path):
    result = _cli("run", "--cohort", tmp_path, "--store", tmp_path / "store")
    assert result.returncode == 2 and "no scans.csv" in result.stderr


def test_each_store_has_its_own_instance_and_dagster_home_overrides_it(cohort, tmp_path):
    store = tmp_path / "store"
    patients_only = ("run", "--cohort", cohort, "--select", "key:patients")
    result = _cli(*patients_only, "--store", store)
    assert result.returncode == 0, result.stdout + result.stderr
    # The store's own instance, which `metorigin ui` opens too: the run is there, under its named job.
    instance = dg.DagsterInstance.from_config(str(store / ".dagster"))
    assert {run.job_name for run in instance.get_runs()} == {"ingest_cohort"}
    instance.dispose()
    # DAGSTER_HOME overrides it; an instance is one store's history, so one that serves this store is
    # refused for another, before that store is created.
    other = _cli(*patients_only, "--store", tmp_path / "other", env={"DAGSTER_HOME": str(store / ".dagster")})
    assert other.returncode == 2 and "serves the store" in other.stderr and "unset DAGSTER_HOME" in other.stderr
    assert not (tmp_path / "other").exists()


def test_a_cohort_of_one_class_builds_its_feature_store_and_only_the_study_is_refused(cohort, tmp_path):
    """A group still collecting the other class (or checking one real case) ingests, segments,
    measures and builds the feature store; only the study needs both classes."""
    patients = (cohort / "patients.csv").read_text().splitlines(True)
    keep = {row.split(",")[0] for row in patients[1:] if ",colorectal" in row}
    (cohort / "patients.csv").write_text("".join(patients[:1] + [r for r in patients[1:] if r.split(",")[0] in keep]))
    scans = (cohort / "scans.csv").read_text().splitlines(True)
    (cohort / "scans.csv").write_text("".join(scans[:1] + [r for r in scans[1:] if r.split(",")[1] in keep]))
    store = tmp_path / "store"
    built = _cli("run", "--cohort", cohort, "--store", store, "--select", "not group:study", "--workers", "2")
    assert built.returncode == 0, built.stdout + built.stderr
    with duckdb.connect(str(store / "feature_store.duckdb"), read_only=True) as con:
        labels = {r[0] for r in con.execute("select distinct label from training_matrix").fetchall()}
        lesions = con.execute("select count(*) from lesion_features").fetchone()[0]
    assert labels == {"colorectal"} and lesions > 0
    study = _cli("run", "--cohort", cohort, "--store", store)
    assert study.returncode == 2 and "has the class 'pancreatic'" in study.stderr, study.stderr


def test_the_console_script_keeps_exit_codes_and_every_line(tmp_path):
    """`metorigin` ends with os._exit once the exit handlers ran (cli/main.py `command`): the exit
    code, a usage error's message and every printed line still arrive, to a file as to a pipe."""
    bad = _cli("run")
    assert bad.returncode == 2 and "the following arguments are required: --cohort, --store" in bad.stderr
    study = tmp_path / "paper.yaml"
    assert _cli("study", "--example", "paper", "--out", study).returncode == 0 and study.is_file()
    shown = _cli("study", "--study", study)
    assert shown.returncode == 0, shown.stderr
    with open(tmp_path / "out.txt", "w") as out:
        to_file = subprocess.run([METORIGIN, "study", "--study", str(study)], stdout=out, timeout=600)
    assert to_file.returncode == 0 and (tmp_path / "out.txt").read_text() == shown.stdout != ""


def test_the_console_script_exits_at_once_after_the_study_fits_in_a_worker_pool():
    """The study's fits leave joblib's loky workers idle (300 s before they exit alone): the exit
    stops them first, as the interpreter does (`exit_without_teardown`), so the command returns when
    its work is done. Before, a study run returned 5 minutes late. Both private calls it makes are
    checked to exist, so a Python upgrade that drops one fails here, not in a user's terminal."""
    import atexit
    import threading

    assert callable(threading._shutdown) and callable(atexit._run_exitfuncs)
    script = (
        "import time, joblib\n"  # tasks long enough that both workers start and stay
        "assert joblib.Parallel(n_jobs=2)(joblib.delayed(time.sleep)(0.5) for _ in range(4)) == [None] * 4\n"
        "from metorigin.cli.main import exit_without_teardown\n"
        "print('fitted', flush=True)\n"
        "exit_without_teardown(3)\n"
    )
    # 60 s: the work takes 1 s and the exit less; a missed shutdown waits out loky's 300 s idle timeout.
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, encoding="utf-8", timeout=60)
    assert done.returncode == 3 and done.stdout == "fitted\n", done.stderr
