"""The dbt feature store and its Great Expectations checks, on a real pipeline run of the tiny cohort.

Every mart is checked against values computed here, independently, from the Parquet lake.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from metorigin.cli.main import main
from metorigin.core.config import RunConfig
from metorigin.core.store import Store
from metorigin.definitions import build_definitions
from metorigin.defs.common.resources import feature_store_reader
from metorigin.defs.feature_store.dbt import DBT_DIR, DBT_EXECUTABLE, PARSE_CACHE, dbt_vars
from metorigin.runtime.runner import run_selection
from tests.helpers import NOT_STUDY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline(tiny_cohort, tmp_path_factory):
    store_dir = tmp_path_factory.mktemp("fs") / "store"
    defs = build_definitions(RunConfig(cohort=str(tiny_cohort), store=str(store_dir), workers=2))
    instance = dg.DagsterInstance.ephemeral()
    report = run_selection(defs, instance, selection=NOT_STUDY, progress=lambda _: None)
    assert report.ok, (report.step_failures, report.failed_checks)
    yield defs, Store(store_dir), report, instance


def _sql(store: Store, query: str) -> pd.DataFrame:
    with store.connect_read_only() as con:
        return con.execute(query).df()


def _lake_patients(store: Store) -> pd.DataFrame:
    """Per patient, from the lake alone: label, demographics, included lesions and burden."""
    scans = store.read_lake("scans").query("included")
    seg = store.read_lake("segmentations").merge(scans[["scan_id"]], on="scan_id")
    lesions = store.read_lake("lesions").query("included")
    per_scan = (
        seg.set_index("scan_id")[["patient_id", "liver_volume_ml", "liver_parenchyma_mean_hu"]]
        .join(lesions.groupby("scan_id").agg(lesion_ml=("volume_ml", "sum"), n=("lesion_id", "size")))
        .fillna({"lesion_ml": 0, "n": 0})
    )
    per_patient = per_scan.groupby("patient_id").agg(
        liver=("liver_volume_ml", "sum"),
        lesion=("lesion_ml", "sum"),
        n=("n", "sum"),
        parenchyma=("liver_parenchyma_mean_hu", "mean"),
    )
    per_patient["burden"] = per_patient["lesion"] / per_patient["liver"]
    return store.read_lake("patients").set_index("patient_id").join(per_patient, how="inner")


def test_dbt_tests_ran_as_checks(pipeline):
    _, _, report, _ = pipeline
    assert report.checks_passed >= 30  # dbt's data tests surface as Dagster asset checks


def test_the_ui_shows_table1_and_the_burden_by_class_and_each_models_yml_description(pipeline):
    defs, _, _, instance = pipeline

    def metadata(name: str) -> dict:
        event = instance.get_latest_materialization_event(dg.AssetKey(["feature_store", name]))
        return event.asset_materialization.metadata

    table1 = metadata("cohort_characteristics")["table_1"].value
    assert table1.startswith("| characteristic | level |") and "colorectal" in table1 and "pancreatic" in table1
    burden = metadata("tumor_burden")["by_class"].value
    assert "median tumour burden [IQR]" in burden and "| colorectal | 4 |" in burden
    graph = defs.resolve_asset_graph()
    description = graph.get(dg.AssetKey(["feature_store", "tumor_burden"])).description
    assert description.startswith("Liver volume") and "Raw SQL" not in description and "select" not in description
    assert "dagster_dbt/project" not in graph.get(dg.AssetKey(["feature_store", "tumor_burden"])).metadata


def test_tumor_burden_matches_the_lake(pipeline):
    _, store, _, _ = pipeline
    expected = _lake_patients(store)
    mart = _sql(store, "select * from tumor_burden where level = 'patient'").set_index("patient_id")
    assert sorted(mart.index) == sorted(expected.index)
    np.testing.assert_allclose(mart.loc[expected.index, "tumor_burden"], expected["burden"], rtol=1e-9)
    np.testing.assert_allclose(mart.loc[expected.index, "lesion_volume_ml"], expected["lesion"], rtol=1e-9)
    scans = _sql(store, "select * from tumor_burden where level = 'scan'")
    assert len(scans) == int(store.read_lake("scans")["included"].sum())


def test_cohort_characteristics_is_table1_of_the_lake(pipeline):
    _, store, _, _ = pipeline
    expected = _lake_patients(store)
    table = _sql(store, "select * from cohort_characteristics")
    cell = lambda c, lvl, cohort: table.query("characteristic == @c and level == @lvl and cohort == @cohort").iloc[0]  # noqa: E731
    for site, group in expected.groupby("label"):
        assert cell("n", "", site)["value"] == len(group)
        age = cell("Age (median [IQR])", "", site)
        q1, med, q3 = np.percentile(group["age"], [25, 50, 75])
        assert age["value"] == pytest.approx(med) and age["display"] == f"{med:.2f} [{q1:.2f}, {q3:.2f}]"
        for sex, n in group["sex"].value_counts().items():
            assert cell("Sex", sex, site)["display"] == f"{n} ({100 * n / len(group):.1f}%)"
        assert cell("Liver lesions", "Number", site)["value"] == group["n"].sum()
        assert cell("Liver lesions", "Per patient", site)["value"] == pytest.approx(group["n"].mean())
        assert cell("Liver parenchyma", "Liver tumor burden", site)["value"] == pytest.approx(group["burden"].mean())
        assert cell("Liver parenchyma", "Mean HU", site)["value"] == pytest.approx(group["parenchyma"].mean())
    assert list(table["row_order"]) == sorted(table["row_order"])  # prints in the table's order


def test_lesion_features_and_training_matrix_match_the_long_table(pipeline):
    _, store, _, _ = pipeline
    long = store.read_lake("radiomics_features")
    wide = _sql(store, "select * from lesion_features").set_index("lesion_id")
    assert len(wide.columns) == 2 + 107 and len(wide) == long["lesion_id"].nunique()
    expected = long.pivot(index="lesion_id", columns="feature_name", values="feature_value")
    np.testing.assert_array_equal(wide.loc[expected.index, expected.columns].to_numpy(), expected.to_numpy())
    matrix = _sql(store, "select * from training_matrix")
    labels = store.read_lake("patients").set_index("patient_id")["label"]
    assert (matrix["label"] == labels.loc[matrix["patient_id"]].to_numpy()).all()
    included = store.read_lake("lesions").query("included")["lesion_id"]
    assert set(matrix["lesion_id"]) <= set(included)


def _analyst_session(store: Store) -> subprocess.Popen:
    """Another process holding the feature store open read-write, as the DuckDB CLI does, until told to stop."""
    script = (
        "import duckdb, sys\n"
        f"con = duckdb.connect({str(store.duckdb_path)!r})\n"
        "query = 'select count(*) from training_matrix'\n"
        "print(con.execute(query).fetchone()[0], flush=True)\n"
        "sys.stdin.readline()\n"
        "print(con.execute(query).fetchone()[0], flush=True)\n"
    )
    session = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, encoding="utf-8"
    )
    assert session.stdout.readline().strip().isdigit()  # connected and queried before the run starts
    return session


def test_corrupt_feature_fails_the_check_and_stops_training_matrix(pipeline):
    defs, store, _, _ = pipeline
    before = _sql(store, "select * from training_matrix order by lesion_id")
    analyst = _analyst_session(store)
    scan = store.lake_partitions("radiomics_features")[0]
    path = store.lake_file("radiomics_features", scan)
    original = pd.read_parquet(path)
    corrupt = original.copy()
    victim = corrupt["lesion_id"].iloc[0]
    corrupt.loc[
        (corrupt["lesion_id"] == victim) & (corrupt["feature_name"] == "original_shape_MeshVolume"), "feature_value"
    ] = -5.0
    corrupt.to_parquet(path, index=False)
    try:
        report = run_selection(
            defs, dg.DagsterInstance.ephemeral(), selection='group:"feature_store"', progress=lambda _: None
        )
    finally:
        original.to_parquet(path, index=False)
    try:
        assert report.blocked_by == ["feature_store/lesion_features:data_quality"]
        ((check, problems),) = report.failed_checks
        assert "original_shape_MeshVolume" in problems and victim in problems
        assert "feature_store/training_matrix" not in report.materialized
        assert "feature_store/lesion_features" in report.materialized
    finally:
        out, _ = analyst.communicate("again\n", timeout=60)
    assert analyst.returncode == 0 and out.split() == [str(len(before))]  # its snapshot, untouched
    pd.testing.assert_frame_equal(_sql(store, "select * from training_matrix order by lesion_id"), before)


# What `metorigin sql` must refuse (issue 11): each wrote or read a file, or opened a door to do so.
# `{store}` and `{lake}` stand for the store folder and its lake.
REFUSED_QUERIES = [
    "copy (select 1) to 'x.parquet'",
    "copy (select * from scans) to '{lake}/scans/all.parquet'",
    "copy scans to 'x.csv'",
    "select * from read_csv('/etc/passwd')",
    "select * from read_text('/etc/passwd')",
    "select * from glob('{lake}/*/*.parquet')",
    "select * from read_parquet('{lake}/scans/all.parquet')",
    "attach 'x.duckdb' (READ_WRITE)",
    "attach '{store}/.build/feature_store.duckdb' as build (READ_WRITE)",
    "attach '{store}/feature_store.duckdb' as published (READ_WRITE)",
    "install httpfs",
    "load httpfs",
    "set enable_external_access = true",
    "set lock_configuration = false",
    "reset temp_directory",
    "pragma profiling_output = 'x.json'",
    "export database 'x_dump'",
    "export database '{store}/feature_store.duckdb.tmp'",
    "create table x as select 1",
]


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def _metorigin_sql(capsys, store: Store, query: str, *options: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["sql", "--store", str(store.root), query, *options])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("query", REFUSED_QUERIES)
def test_metorigin_sql_refuses_file_access(pipeline, capsys, tmp_path, monkeypatch, query):
    _, store, _, _ = pipeline
    monkeypatch.chdir(tmp_path)
    store_before, cwd_before = _files(store.root), _files(tmp_path)
    code, out, err = _metorigin_sql(capsys, store, query.format(store=store.root, lake=store.lake))
    assert code == 2 and out == ""
    assert err.startswith("error: refused: `metorigin sql` is read-only"), err
    assert "has no file access (DuckDB: " in err or "creates, changes and attaches nothing (DuckDB: " in err
    assert "use --csv and redirect it to a file" in err and "views over the lake" not in err
    assert _files(store.root) == store_before  # byte for byte, and nothing created in the store
    assert _files(tmp_path) == cwd_before and not list(tmp_path.iterdir())


def _documented_relations() -> list[tuple[str, str]]:
    """(relation, kind) for each relation in docs/pipeline.md's table of the feature store's relations."""
    page = (Path(__file__).parents[1] / "docs" / "pipeline.md").read_text(encoding="utf-8")
    section = page.split("## The feature store (dbt, `metorigin/sql/`)")[1].split("\n## ")[0]
    relations = []
    for row in (line for line in section.splitlines() if line.startswith("| `")):
        names, kind, what = (cell.strip() for cell in row.strip("|").split("|")[:3])
        for name in re.findall(r"`([^`]+)`", names):
            if name.endswith("*"):  # `stg_*`: the names are listed in the description
                expanded = [n for n in re.findall(r"`([^`]+)`", what) if n.startswith(name[:-1])]
                assert expanded, row
                relations += [(n, kind) for n in expanded]
            else:
                relations.append((name, kind))
    return relations


def test_published_store_is_tables_only_and_still_answers(pipeline, capsys):
    _, store, _, _ = pipeline
    relations = _documented_relations()
    assert len(relations) >= 17 and {kind for _, kind in relations} == {"table"}
    with store.connect_read_only() as con:
        assert con.execute("select view_name from duckdb_views() where not internal").fetchall() == []
        tables = {name for (name,) in con.execute("select table_name from duckdb_tables()").fetchall()}
    assert {name for name, _ in relations} <= tables
    code, out, err = _metorigin_sql(capsys, store, "select count(*) as n from scans", "--csv")
    assert (code, err) == (0, "1 row(s) written\n") and out.splitlines() == ["n", str(len(store.read_lake("scans")))]
    with feature_store_reader(str(store.root)).get_connection() as con:  # the study assets' reader
        assert len(con.execute("select * from training_matrix").df()) > 0
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"select * from read_parquet('{store.lake}/scans/all.parquet')")


def test_a_store_with_views_over_the_lake_is_refused_with_a_rebuild_hint(tmp_path, capsys):
    """A store published before every relation became a table (its views read the lake)."""
    store = Store(tmp_path / "store")
    store.write_lake("scans", pd.DataFrame({"scan_id": ["S1"]}))
    with duckdb.connect(str(store.duckdb_path)) as con:
        con.execute(f"create view scans as select * from read_parquet('{store.lake}/scans/*.parquet')")
    code, _, err = _metorigin_sql(capsys, store, "select * from scans")
    assert code == 2 and err.startswith("error: refused:") and "rebuild it with `metorigin run" in err
    code, _, err = _metorigin_sql(capsys, store, "select * from no_such_table")
    assert code == 2 and err.startswith("error: Catalog Error: Table with name no_such_table does not exist")


def test_the_store_keeps_the_parse_its_dbt_steps_start_from(pipeline, tmp_path):
    """The parse a dbt step leaves in the store's build folder was made with the study's vars and the
    store's profile, so the next step starts from it instead of parsing the whole project again
    (defs/feature_store/dbt.py). dbt only parses here: the build copy is not opened."""
    defs, store, _, _ = pipeline
    parsed = store.build_path.parent / PARSE_CACHE
    assert parsed.stat().st_size > 0
    (tmp_path / "target").mkdir()
    shutil.copy(parsed, tmp_path / "target" / PARSE_CACHE)
    variables = json.dumps(dbt_vars(defs.resources["settings"].settings()))
    out = subprocess.run(
        [DBT_EXECUTABLE, "parse", "--vars", variables, "--target-path", str(tmp_path / "target")]
        + ["--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR), "--log-path", str(tmp_path)],
        env={**os.environ, "METORIGIN_STORE": str(store.root), "METORIGIN_DUCKDB": str(store.build_path)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Performance info" in out, out  # it parsed
    assert "full parse" not in out.lower() and "unable to do partial parsing" not in out.lower(), out


def test_metorigin_sql_stops_at_its_timeout_caps_what_it_prints_and_names_the_read_only_refusal(pipeline, capsys):
    _, store, _, _ = pipeline
    endless = "select count(*) from range(1000000000) a, range(1000000) b"
    code, out, err = _metorigin_sql(capsys, store, endless, "--timeout", "1")
    assert code == 2 and out == "" and err.startswith("error: the query ran past --timeout 1 s and was stopped.")
    code, out, err = _metorigin_sql(capsys, store, "select * from range(25000) t(i)", "--limit", "3")
    assert code == 0 and out.split() == ["i", "0", "1", "2"]
    assert "(the first 3 rows; the query gives more: --limit N prints more, --csv writes them all)" in err
    code, out, err = _metorigin_sql(capsys, store, "select * from range(25000) t(i)", "--csv")
    assert code == 0 and len(out.splitlines()) == 25_001 and err == "25000 row(s) written\n"  # no cap
    code, _, err = _metorigin_sql(capsys, store, "attach ':memory:' as scratch")
    assert code == 2 and "is read-only: it creates, changes and attaches nothing (DuckDB: " in err
