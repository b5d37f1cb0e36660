"""The study report's pure parts on small synthetic predictions: curve numbers, names, anonymising.
(The whole report, on a real store and in Chromium, is tested in test_study.py.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from metorigin.core.study import LabelSettings
from metorigin.report.curves import (
    GRID,
    _tpr_on_grid,
    auc_from_points,
    cv_roc,
    lesion_grid,
    reliability,
    roc_points,
    with_truth,
)
from metorigin.report.report_data import ReportTables, anonymised
from metorigin.study.evaluation import patient_scores
from metorigin.study.tables import readable_feature


def _predictions(seed: int = 3, patients: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(patients):
        label = "b" if p % 2 else "a"
        for lesion in range(rng.integers(1, 5)):
            for model in ("m1", "m2"):
                probability = float(np.clip(rng.normal(0.65 if label == "b" else 0.4, 0.2), 0.01, 0.99))
                predicted = "b" if probability >= 0.5 else "a"
                rows.append((f"S{p:02d}-L{lesion}", f"P{p:02d}", label, probability, predicted, model))
    columns = ["lesion_id", "patient_id", "label", "probability", "predicted_label", "model_id"]
    return with_truth(pd.DataFrame(rows, columns=columns), LabelSettings(classes=("a", "b"), positive="b"))


def test_roc_points_give_back_the_auc_at_both_levels_and_bands_hold_the_curve():
    predictions = _predictions()
    points = roc_points(predictions, seed=1, resamples=50)
    for model, rows in predictions.groupby("model_id"):
        ours = points[points["model_id"] == model]
        lesion = ours[(ours["level"] == "lesion") & (ours["kind"] == "curve")]
        assert auc_from_points(lesion) == pytest.approx(roc_auc_score(rows["y_true"], rows["probability"]))
        patients = patient_scores(rows)
        patient = ours[(ours["level"] == "patient") & (ours["kind"] == "curve")]
        assert auc_from_points(patient) == pytest.approx(roc_auc_score(patients["y_true"], patients["probability"]))
        band = ours[(ours["level"] == "lesion") & (ours["kind"] == "band")]
        assert (band["tpr"] <= band["tpr_high"]).all() and band["tpr_high"].iloc[-1] == 1
        # The observed curve, read on the band's grid (its upper step), lies inside the band.
        observed = np.interp(band["fpr"], lesion["fpr"], lesion["tpr"])
        assert (band["tpr"] <= observed + 1e-9).all() and (observed <= band["tpr_high"] + 1e-9).all()
    # The band's fast ROC reads the same rates as sklearn's roc_curve, ties included.
    rows = predictions[predictions["model_id"] == "m1"].assign(probability=lambda f: f["probability"].round(1))
    fpr, tpr, _ = roc_curve(rows["y_true"], rows["probability"])
    fast = _tpr_on_grid(rows["y_true"].to_numpy(), rows["probability"].to_numpy())
    assert fast == pytest.approx(np.interp(GRID, fpr, tpr))
    # One class among a model's test patients: no curve for it, and no error.
    one_class = predictions[predictions["label"] == "a"]
    assert roc_points(one_class, seed=1, resamples=10).empty


def test_cv_roc_averages_the_folds_with_both_classes_and_reliability_has_the_brier_score():
    predictions = _predictions()
    folds = predictions.assign(repeat=0, fold=lambda f: f["patient_id"].str[-1].astype(int) % 3)
    folds.loc[folds["fold"] == 2, "y_true"] = 0  # a fold with one class: left out of the mean
    curve = cv_roc(folds)
    assert set(curve["folds"]) == {2} and curve.groupby("model_id")["tpr"].is_monotonic_increasing.all()
    bins = reliability(predictions)
    m1 = predictions[predictions["model_id"] == "m1"]
    brier = bins.loc[bins["model_id"] == "m1", "brier"].iloc[0]
    assert brier == pytest.approx(np.mean((m1["probability"] - m1["y_true"]) ** 2))


def test_fig4_cells_hold_the_probability_of_the_true_class_grouped_by_class_then_patient():
    predictions = _predictions()
    cells = lesion_grid(predictions, ["m1", "m2"], ("b", "a"))
    assert list(cells["label"].drop_duplicates()) == ["b", "a"] and len(cells) == len(predictions)
    for _, cell in cells.sample(5, random_state=0).iterrows():
        row = predictions[
            (predictions["lesion_id"] == cell["lesion_id"]) & (predictions["model_id"] == cell["model_id"])
        ]
        p = row["probability"].iloc[0]
        assert cell["p_true"] == pytest.approx(p if cell["label"] == "b" else 1 - p)
        assert cell["correct"] == (cell["p_true"] >= 0.5)


def test_feature_names_read_as_class_and_feature():
    assert readable_feature("original_glcm_Idmn") == "GLCM · Idmn"
    assert readable_feature("original_firstorder_10Percentile") == "First order · 10Percentile"
    assert readable_feature("wavelet-LLH_glszm_ZoneEntropy") == "GLSZM · Zone Entropy (wavelet-LLH)"
    assert readable_feature("lesion_count") == "lesion_count"


def test_anonymised_ids_are_one_sequence_number_per_id_in_every_table():
    predictions = _predictions()
    split = predictions[["patient_id", "label"]].drop_duplicates().assign(set="test", n_lesions=1)
    tables = anonymised(ReportTables({"test_predictions": predictions, "split": split, "settings": None}))
    coded = tables.get("test_predictions")
    assert not set(coded["patient_id"]) & set(predictions["patient_id"])
    assert coded["patient_id"].nunique() == predictions["patient_id"].nunique()
    pairs = set(zip(predictions["patient_id"], coded["patient_id"]))
    assert set(zip(split["patient_id"], tables.get("split")["patient_id"])) <= pairs  # same code, every table
    assert coded["lesion_id"].str.fullmatch(r"lesion-\d{4}").all() and tables.get("example_slices") is None
