"""External validation's plain functions (metorigin/inference/external.py) on small frames whose
answer is known; the whole validation on real stores is tests/test_models_in_use.py's."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from metorigin.arms import BY_NAME
from metorigin.core.errors import MetoriginError
from metorigin.core.store import Store
from metorigin.core.study import get_settings
from metorigin.inference import external
from metorigin.inference.external import external_metrics, labelled_predictions, trained_models

STUDY = get_settings("quick")


def _predictions(model_id: str, separate: bool) -> pd.DataFrame:
    rows = []
    for patient in range(12):
        label = STUDY.label.classes[patient % 2]
        for lesion in range(2):
            p = (0.9 if label == STUDY.label.positive else 0.1) if separate else 0.5 + 0.01 * lesion
            rows.append((f"P{patient}-{lesion}", f"S{patient}", f"P{patient}", label, p, patient == 0))
    frame = pd.DataFrame(
        rows, columns=["lesion_id", "scan_id", "patient_id", "label", "probability", "out_of_distribution"]
    )
    return frame.assign(model_id=model_id, seen_in_training=True)


def _metrics() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "model_id": m,
                "arm": a,
                "model": m,
                "resampler": r,
                "auc": auc,
                "cv_auc": cv,
                "cv_auc_ci_low": 0.5,
                "cv_auc_ci_high": 0.9,
                "model_file": f"artifacts/models/{a}/{m}.joblib",
                "settings_hash": "h",
            }
            for m, a, r, auc, cv in (("good", "radiomics", "smote", 0.8, 0.7), ("flat", "densenet", None, 0.6, None))
        ]
    )


def test_each_frozen_model_gets_table_3_on_this_cohort_beside_its_own_test_auc():
    predictions = pd.concat([_predictions("good", True), _predictions("flat", False)], ignore_index=True)
    table = external_metrics(predictions, _metrics(), STUDY, shared=3, origin="/elsewhere").set_index("model_id")
    assert table.loc["good", "auc"] == 1.0 and table.loc["good", "internal_auc"] == 0.8
    assert table.loc["flat", "auc"] < table.loc["good", "auc"]
    assert table.loc["good", "cv_auc"] == 0.7 and pd.isna(table.loc["flat", "cv_auc"])
    assert (table["out_of_distribution_scans"] == 1).all() and (table["shared_patient_ids"] == 3).all()
    assert (table["models_store"] == "/elsewhere").all() and table.loc["good", "arm"] == "radiomics"


def test_patients_of_another_centre_are_never_counted_as_seen_in_training():
    predictions = _predictions("good", True)
    elsewhere = labelled_predictions(predictions, _metrics(), STUDY, "/elsewhere")
    assert not elsewhere["seen_in_training"].any() and (elsewhere["resampler"] == "smote").all()
    own = labelled_predictions(predictions, _metrics(), STUDY, ".")
    assert own["seen_in_training"].all() and (own["models_store"] == ".").all()
    calls = own.set_index("lesion_id")["predicted_label"]
    assert calls["P1-0"] == STUDY.label.positive and calls["P0-0"] == STUDY.label.negative


def test_a_store_without_trained_models_is_refused_and_an_arm_that_cannot_score_is_left_out(tmp_path, monkeypatch):
    store = Store(tmp_path / "store")
    with pytest.raises(MetoriginError, match="holds no registered models: train there first"):
        trained_models(store)
    for table, frame in (("radiomics_metrics", _metrics().iloc[:1]), ("densenet_metrics", _metrics().iloc[1:])):
        store.write_lake(table, frame)
    store.write_lake("models", pd.DataFrame({"model_id": ["good", "flat"]}))
    assert sorted(trained_models(store)["model_id"]) == ["flat", "good"]
    assert np.isclose(trained_models(store).set_index("model_id").loc["good", "auc"], 0.8)
    monkeypatch.setattr(external, "ARMS", (replace(BY_NAME["densenet"], score=None), BY_NAME["radiomics"]))
    assert trained_models(store)["model_id"].tolist() == ["good"]  # an arm declared without `score`
