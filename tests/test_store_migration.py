"""A store written by older code is migrated in place by newer code, and its feature store builds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from metorigin.core.errors import StoreVersionError
from metorigin.core.manifest import MANIFEST, SCHEMA_VERSION, migrate, read_manifest, schema_version
from metorigin.core.schemas import LAKE_TABLES
from metorigin.core.store import Store

STORE_V1 = Path(__file__).parent / "data" / "store_v1"


@pytest.fixture
def old_store(tmp_path) -> Store:
    shutil.copytree(STORE_V1 / "lake", tmp_path / "store" / "lake")
    return Store(tmp_path / "store")


def test_an_unversioned_store_is_migrated_to_the_declared_schemas(old_store):
    before = pd.read_parquet(old_store.lake_file("patients"))
    assert schema_version(old_store) == 1 and "primary_site" in before.columns
    done = migrate(old_store)
    assert [step[:6] for step in done] == ["1 -> 2", "2 -> 3"]
    assert schema_version(old_store) == SCHEMA_VERSION == read_manifest(old_store)["schema_version"]
    for name, schema in LAKE_TABLES.items():
        for partition in old_store.lake_partitions(name):
            assert pd.read_parquet(old_store.lake_file(name, partition)).columns.tolist() == schema.names
    after = pd.read_parquet(old_store.lake_file("patients"))
    assert after["label"].tolist() == before["primary_site"].tolist()  # the classes survive the rename
    assert migrate(old_store) == []  # a current store is left alone
    # Scans processed before the full-decode checks are marked unchecked, not passed or failed.
    unchecked = old_store.read_lake("scan_integrity")
    assert sorted(unchecked["scan_id"]) == old_store.lake_partitions("segmentations")
    assert set(unchecked["status"]) == {"unchecked"}


def test_a_store_from_newer_code_is_refused(tmp_path):
    store = Store(tmp_path / "store")
    store.root.mkdir()
    (store.root / MANIFEST).write_text('{"schema_version": 99}')
    with pytest.raises(StoreVersionError, match="update metorigin"):
        migrate(store)


@pytest.mark.slow
def test_the_feature_store_builds_from_a_migrated_store(old_store, monkeypatch):
    """The `study_settings` asset migrates the store (as a run from the UI would), then dbt builds."""
    from dagster import DagsterInstance

    from metorigin.core.config import RunConfig
    from metorigin.definitions import build_definitions
    from metorigin.runtime.runner import run_selection

    defs = build_definitions(RunConfig(store=str(old_store.root)))
    with DagsterInstance.ephemeral() as instance:
        report = run_selection(defs, instance, "key:study_settings or group:feature_store")
    assert report.ok, report.step_failures + [c for c, _ in report.failed_checks]
    assert read_manifest(old_store)["schema_version"] == SCHEMA_VERSION
    lesions = old_store.read_lake("lesions")
    with old_store.connect_read_only() as con:
        n_features = con.execute("select count(*) from lesion_features").fetchone()[0]
        labels = dict(con.execute("select patient_id, label from patients").fetchall())
    assert n_features == int(lesions["included"].sum()) > 0
    assert set(labels.values()) == {"colorectal", "pancreatic"}
