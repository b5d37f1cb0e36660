"""The `metorigin` command as a user runs it: separate processes, real files, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import append_row

# Every test here runs the pipeline or a subprocess: `make test`, not `make test-fast`.
pytestmark = pytest.mark.slow

METORIGIN = str(Path(sys.executable).with_name("metorigin"))


def _cli(*args, env=None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("METORIGIN_", "DAGSTER_HOME"))}
    environment.update(env or {})
    return subprocess.run([METORIGIN, *map(str, args)], capture_output=True, text=True, timeout=600, env=environment)


def test_synth_run_sql_as_a_user_would(tmp_path):
    cohort, store = tmp_path / "cohort", tmp_path / "store"
    synth = _cli("synth", "--out", cohort, "--scale", "0.05", "--matrix", "64", "--seed", "5")
    assert synth.returncode == 0, synth.stderr
    assert "10/10 scans written" in synth.stdout

    run = _cli("run", "--cohort", cohort, "--store", store, "--profile", "quick", "--densenet-epochs", "1")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "succeeded" in run.stdout and "scans: 8 of 10 included" in run.stdout
    assert "Table 1 (cohort_characteristics):" in run.stdout and "Liver tumor burden" in run.stdout
    table3 = run.stdout.split("Table 3 (model_metrics")[1]
    assert "| densenet | densenet121 |" in table3 and "| combined |" in table3
    assert "| radiomics | knn | undersampling |" in table3

    count = _cli("sql", "--store", store, "select count(*) as n from patients", "--csv")
    assert count.returncode == 0, count.stderr
    assert count.stdout.splitlines() == ["n", str(len(pd.read_csv(cohort / "patients.csv")))]
    table = _cli("sql", "--store", store, "select scan_id, included from scans order by scan_id")
    assert table.stdout.split()[:4] == ["scan_id", "included", "S0001", "True"]

    # Fewer DenseNet epochs made it another study: the store refuses the default one, before any work.
    other = _cli("run", "--cohort", cohort, "--store", store, "--select", "key:patients")
    assert other.returncode == 2 and "--replace-study" in other.stderr and "hash" in other.stderr

    line = append_row(cohort / "patients.csv", "P100,colon,70,F,T4,N1,M1")
    bad = _cli(
        "run",
        "--cohort",
        cohort,
        "--store",
        store,
        "--select",
        "key:patients",  # the row check, not a rerun
        "--densenet-epochs",
        "1",
    )
    assert bad.returncode == 1
    assert f"patients.csv line {line} (P100): unknown primary_site 'colon'" in bad.stdout
    assert "Fix: use one of colorectal, pancreatic" in bad.stdout


def test_sql_errors_are_clear(tmp_path):
    missing = _cli("sql", "--store", tmp_path / "nowhere", "select 1")
    assert missing.returncode == 2 and "run `metorigin run` first" in missing.stderr


def test_run_refuses_a_folder_without_scans_csv(tmp_path):
    result = _cli("run", "--cohort", tmp_path, "--store", tmp_path / "store")
    assert result.returncode == 2 and "no scans.csv" in result.stderr


def test_unknown_selection_is_an_error(cohort, tmp_path):
    result = _cli("run", "--cohort", cohort, "--store", tmp_path / "store", "--select", "key:nonexistent")
    assert result.returncode == 2 and "matches no asset" in result.stderr


def test_run_with_dagster_home_records_the_run(cohort, tmp_path):
    home = tmp_path / "home"
    result = _cli(
        "run",
        "--cohort",
        cohort,
        "--store",
        tmp_path / "store",
        "--select",
        "key:patients",
        env={"DAGSTER_HOME": str(home)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (home / "dagster.yaml").is_file() and (home / "history" / "runs.db").exists()
