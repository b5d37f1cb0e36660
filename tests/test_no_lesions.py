"""A cohort without a single lesion (liver-only masks) builds a feature store with the expected
columns and zero rows, and the study says "no lesions" plainly instead of failing a schema check."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from metorigin.core.config import RunConfig
from metorigin.core.store import Store
from metorigin.definitions import build_definitions
from metorigin.imaging.radiomics import feature_names
from metorigin.runtime.runner import run_selection

pytestmark = pytest.mark.slow


def test_a_cohort_without_lesions_gets_an_empty_feature_store_and_a_plain_message(cohort, tmp_path, monkeypatch):
    scans = pd.read_csv(cohort / "scans.csv", dtype=str, keep_default_na=False).head(4)  # 4 scans are enough
    scans["lesion_labels"] = ""  # no lesion label declared: liver only, as an organ model gives ...
    scans["ignore_labels"] = "2"  # ... and the masks' lesion label is ignored, as the cohort must say
    scans.to_csv(cohort / "scans.csv", index=False)
    defs = build_definitions(RunConfig(cohort=str(cohort), store=str(tmp_path / "store"), workers=1))
    report = run_selection(defs, dg.DagsterInstance.ephemeral(), progress=lambda _: None)
    with Store(tmp_path / "store").connect_read_only() as con:
        wide = con.execute("select * from lesion_features").df()
        n_lesions = con.execute("select count(*) from lesions").fetchone()[0]
    assert n_lesions == 0 and wide.empty
    assert list(wide.columns) == ["lesion_id", "scan_id", "patient_id", *sorted(feature_names())]
    assert not report.failed_checks, report.failed_checks  # the feature store's checks pass on zero rows
    assert [f for f in report.step_failures if "no lesions to learn from" in f], report.step_failures
