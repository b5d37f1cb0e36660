"""The store's write rules: atomic lake files, serialised DuckDB writers that name the lock holder."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from metorigin.core.store import Store, StoreLockTimeout


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


def _write(path, sql: str) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute(sql)


def test_a_second_writer_waits_and_is_told_who_holds_the_lock(tmp_path):
    store = Store(tmp_path)
    with store.build_lock("run A (dbt)") as path:
        _write(path, "create table t as select 1 as x")
        with pytest.raises(StoreLockTimeout, match=r"locked by run A \(dbt\)"):
            with store.build_lock("run B", timeout_s=0.5):
                pass
    with store.connect_read_only() as con:
        assert con.execute("select x from t").fetchall() == [(1,)]


def test_a_failed_build_is_neither_published_nor_kept(tmp_path):
    store = Store(tmp_path)
    with store.build_lock("first") as path:
        _write(path, "create table t as select 1 as x")
    with pytest.raises(RuntimeError):
        with store.build_lock("second") as path:
            _write(path, "create or replace table t as select 2 as x")
            raise RuntimeError("dbt failed half-way")
    with store.build_lock("third") as path:  # publishes the working copy again
        _write(path, "create table other as select 1 as y")
    with store.connect_read_only() as con:
        assert con.execute("select x from t").fetchall() == [(1,)]
