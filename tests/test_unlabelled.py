"""Unlabelled patients (an empty label cell): ingested and measured like any other patient, kept in
the feature store, never trained on, and counted apart in Table 1 and Fig. 1.

Fast: the cohort contract on the tiny cohort, and the real dbt project (its tests included) on a
small lake of the pipeline's shape (the SQL benchmark's, one patient's label emptied), no pipeline run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from benchmarks.sql_scale import LESIONS_PER_SCAN, MEASURED, run_dbt, write_lake
from metorigin.core import errors
from metorigin.core.package import DBT_PROJECT_DIR
from metorigin.core.study import UNLABELLED, LabelSettings, get_settings
from metorigin.defs.feature_store.dbt import dbt_vars
from metorigin.imaging.cohort import load_cohort
from metorigin.imaging.synth import append_patients
from metorigin.imaging.synth.append import _free_numbers
from metorigin.inference.lesions import score_lesions, wide_features
from metorigin.report import study_report
from metorigin.report.paper_tables import paper_tables
from metorigin.report.report_data import read_tables
from metorigin.study.arm import LesionData
from metorigin.study.scoring import calls
from metorigin.study.tables import UNLABELLED_NOTE, table1_frame

UNLABELLED_PATIENT = "P4"  # of the lake's five patients: P0-P2 the first class, P3 the second


def _set_label(cohort: Path, patient: str, value: str) -> None:
    frame = pd.read_csv(cohort / "patients.csv", dtype=str, keep_default_na=False)
    frame.loc[frame["patient_id"] == patient, "primary_site"] = value
    frame.to_csv(cohort / "patients.csv", index=False)


def test_an_empty_label_is_a_patient_without_class_not_an_error(cohort):
    _set_label(cohort, "P002", "")
    loaded = load_cohort(cohort)
    assert loaded.errors == []
    patients = loaded.patients.set_index("patient_id")
    assert pd.isna(patients.loc["P002", "label"]) and patients["label"].notna().sum() == len(patients) - 1
    assert loaded.scans.loc[loaded.scans["patient_id"] == "P002", "included"].any()  # measured like the others


def test_an_unknown_label_is_still_refused_with_file_line_and_fix(cohort):
    _set_label(cohort, "P002", "liver")
    (error,) = [e for e in load_cohort(cohort).errors if e.file == "patients.csv"]
    assert isinstance(error, errors.InvalidValueError)
    assert error.message.startswith("patients.csv line 3 (P002): unknown primary_site 'liver'")
    assert "Fix: use one of colorectal, pancreatic" in error.message and "leave the cell empty" in error.message


@pytest.fixture(scope="module")
def feature_store(tmp_path_factory) -> Path:
    """The marts (and their dbt tests) built by dbt from a lake of 5 patients, one unlabelled."""
    work = tmp_path_factory.mktemp("unlabelled")
    store = work / "store"
    variables = dbt_vars(get_settings("quick"))
    lake = store / "lake"
    write_lake(lake, 5 * LESIONS_PER_SCAN, variables["feature_names"], variables["label_classes"])
    patients, emptied = lake / "patients" / "all.parquet", work / "patients.parquet"
    duckdb.execute(
        f"copy (select * replace (case when patient_id = '{UNLABELLED_PATIENT}' then null else label end as label) "
        f"from read_parquet('{patients}')) to '{emptied}' (format parquet)"
    )
    emptied.replace(patients)
    database = store / ".build" / "feature_store.duckdb"
    database.parent.mkdir(parents=True)
    env = dict(os.environ, METORIGIN_STORE=str(store), METORIGIN_DUCKDB=str(database))
    dbt = str(Path(sys.executable).with_name("dbt"))
    folders = ("--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR))
    # cautious: a test also reading a table this lake lacks (lesion_slices) is left out
    args = [dbt, "build", "--select", MEASURED, "--indirect-selection", "cautious", "--vars", json.dumps(variables)]
    args += folders
    code, _, _ = run_dbt([*args, "--target-path", str(work / "target"), "--log-path", str(work / "logs")], env, work)
    assert code == 0, (work / "dbt.log").read_text()[-3000:]  # the dbt tests pass: NULL is a valid patient label
    shutil.rmtree(work / "target")
    return database


def _sql(database: Path, query: str) -> pd.DataFrame:
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(query).df()


def test_training_matrix_leaves_the_unlabelled_patient_out_and_the_store_keeps_it(feature_store):
    matrix = _sql(feature_store, "select patient_id, label from training_matrix")
    assert UNLABELLED_PATIENT not in set(matrix["patient_id"]) and matrix["label"].notna().all()
    assert matrix["patient_id"].nunique() == 4
    for table in ("lesions", "lesion_features"):
        kept = _sql(feature_store, f"select count(*) as n from {table} where patient_id = '{UNLABELLED_PATIENT}'")
        assert kept["n"].iloc[0] == LESIONS_PER_SCAN
    patients = _sql(feature_store, f"select label from patients where patient_id = '{UNLABELLED_PATIENT}'")
    assert patients["label"].isna().all()


def test_table1_counts_the_unlabelled_patients_apart_in_every_row(feature_store):
    table = _sql(feature_store, "select * from cohort_characteristics")
    assert set(table["cohort"]) == {*get_settings("quick").label.classes, UNLABELLED}
    n = table[table["characteristic"] == "n"].set_index("cohort")["value"]
    assert n[UNLABELLED] == 1 and n.sum() == 5
    ours = table[table["cohort"] == UNLABELLED]
    assert set(ours["characteristic"]) == set(table["characteristic"])  # a cell in every row of Table 1
    patient = _sql(feature_store, f"select * from patients where patient_id = '{UNLABELLED_PATIENT}'").iloc[0]
    levels = ours[ours["characteristic"].isin(["Sex", "T-Stage", "N-Stage", "M-Stage"])]
    assert sorted(levels["level"]) == sorted(patient[["sex", "t_stage", "n_stage", "m_stage"]])
    assert (levels["display"] == "1 (100.0%)").all()


def test_the_report_shows_the_unlabelled_patients_apart(feature_store, tmp_path):
    with duckdb.connect(str(feature_store), read_only=True) as con:
        tables = read_tables(con, ("table1", "patients", "scans", "lesions", "burden"))
    table1 = paper_tables(tables)["table1"]
    assert list(table1.frame.columns)[-1] == UNLABELLED and table1.notes == [UNLABELLED_NOTE]
    steps, _, sets, unlabelled, counts = study_report._flow(tables)
    assert sets == ["split: not computed yet"]
    assert unlabelled == f"1 unlabelled patient: scored,\nnever trained on ({LESIONS_PER_SCAN} lesions)"
    assert counts.query("stage == 'unlabelled' and what == 'patients'")["count"].tolist() == [1]
    section = study_report._cohort(tables, {"table1": table1}, study_report._Writer(tmp_path))
    assert [item["name"] for item in section.items] == ["cohort_flow", "table1", "tumour_burden"]


def test_a_cohort_without_unlabelled_patients_has_no_unlabelled_column():
    characteristics = pd.DataFrame(
        {
            "characteristic": ["n", "n"],
            "level": ["", ""],
            "cohort": ["pancreatic", "colorectal"],
            "display": ["3", "5"],
            "row_order": [1, 1],
        }
    )
    assert list(table1_frame(characteristics).columns) == ["characteristic", "level", "colorectal", "pancreatic"]


def test_appended_patients_are_valid_rows_with_new_ids(tiny_cohort, tmp_path):
    cohort = shutil.copytree(tiny_cohort, tmp_path / "cohort", symlinks=True)
    before = load_cohort(cohort)
    new = append_patients(cohort, 2, seed=5)
    assert new == ["U001", "U002"] and not set(new) & set(before.patients["patient_id"])
    loaded = load_cohort(cohort)
    assert loaded.errors == []
    patients = loaded.patients.set_index("patient_id")
    assert patients.loc[new, "label"].isna().all() and len(patients) == len(before.patients) + 2
    scans = loaded.scans[loaded.scans["patient_id"].isin(new)]
    assert len(scans) == 2 and scans["included"].all() and scans["scan_id"].is_unique
    assert not set(scans["scan_id"]) & set(before.scans["scan_id"])
    truth = pd.read_csv(cohort / "truth" / "patients.csv")
    assert truth["patient_id"].tolist() == new and truth["primary_site"].notna().all()  # the class, kept aside
    assert _free_numbers(cohort, "U", 1) == [3]  # the next call continues after them


def test_a_missing_probability_gets_no_call_and_a_scan_without_lesions_scores_nothing():
    assert calls(pd.Series([0.2, float("nan"), 0.7]), LabelSettings()) == ["colorectal", None, "pancreatic"]
    empty = wide_features(pd.DataFrame(columns=["lesion_id", "scan_id", "patient_id", "feature_name", "feature_value"]))
    nothing = LesionData(empty, pd.DataFrame(), pd.DataFrame(), Path("."))
    assert score_lesions(Path("."), {}, {}, nothing, {}).empty
