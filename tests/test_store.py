"""The store's write rules: atomic lake files, serialised DuckDB writers that name the lock holder."""

from __future__ import annotations

import pandas as pd
import pytest

from orchestration.store import Store, StoreLockTimeout


def test_lake_writes_replace_whole_files_and_leave_no_temporaries(tmp_path):
    store = Store(tmp_path)
    store.write_lake("lesions", pd.DataFrame({"a": [1, 2]}), partition="S0001")
    store.write_lake("lesions", pd.DataFrame({"a": [3]}), partition="S0001")
    store.write_lake("lesions", pd.DataFrame({"a": [4]}), partition="S0002")
    assert store.lake_partitions("lesions") == ["S0001", "S0002"]
    assert store.read_lake("lesions")["a"].tolist() == [3, 4]
    assert store.read_lake("lesions", ["S0002"])["a"].tolist() == [4]
    assert not [p for p in (tmp_path / "lake").rglob("*") if p.name.startswith(".")]


def test_reading_an_unmaterialised_asset_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="lesions has not been materialised.*run it first"):
        Store(tmp_path).read_lake("lesions")


def test_a_second_writer_waits_and_is_told_who_holds_the_lock(tmp_path):
    store = Store(tmp_path)
    with store.duckdb_writer("run A (scans)") as con:
        con.execute("create table t as select 1 as x")
        with pytest.raises(StoreLockTimeout, match=r"locked by run A \(scans\)"):
            with store.duckdb_writer("run B", timeout_s=0.5):
                pass
    with store.connect_read_only() as con:
        assert con.execute("select x from t").fetchall() == [(1,)]


def test_failed_write_is_not_published(tmp_path):
    store = Store(tmp_path)
    store.replace_table("t", pd.DataFrame({"x": [1]}), holder="first")
    with pytest.raises(RuntimeError):
        with store.duckdb_writer("second") as con:
            con.execute("create or replace table t as select 2 as x")
            raise RuntimeError("the step failed half-way")
    store.replace_table("other", pd.DataFrame({"y": [1]}), holder="third")  # publishes the working copy
    with store.connect_read_only() as con:
        assert con.execute("select x from t").fetchall() == [(1,)]
