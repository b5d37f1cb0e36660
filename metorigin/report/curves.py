"""The numbers behind the report's curves: ROC points with patient-bootstrap bands, the CV ROC,
reliability bins and the per-lesion grid. Kept apart from the drawing so that every figure's data
is written as CSV beside it, and a test can recompute a table's AUC from what the figure shows."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_curve

from metorigin.core.study import LabelSettings
from metorigin.study.evaluation import labels, patient_draws, patient_scores

GRID = np.linspace(0.0, 1.0, 101)  # false-positive rates at which bands and fold means are read
BAND_RESAMPLES = 200  # patient-bootstrap draws per band: enough for a 95% band's shape, ~0.1 s a model


def with_truth(predictions: pd.DataFrame, label: LabelSettings) -> pd.DataFrame:
    return predictions.assign(y_true=labels(predictions, label))


def _frame(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def _tpr_on_grid(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The ROC's true-positive rate at GRID: sklearn's `roc_curve` computation (cumulative counts at
    each distinct score, highest first) without its input validation, which costs about 1 ms a call,
    and a band takes hundreds of calls per model and level (tests/test_report.py checks they agree)."""
    order = np.argsort(-p, kind="mergesort")
    y, p = y[order], p[order]
    last = np.r_[np.flatnonzero(np.diff(p)), len(y) - 1]  # the last lesion at each distinct score
    tps = np.cumsum(y)[last]
    fps = last + 1 - tps
    return np.interp(GRID, np.r_[0, fps / fps[-1]], np.r_[0, tps / tps[-1]])


def _level_rows(rows: pd.DataFrame, level: str) -> pd.DataFrame:
    return patient_scores(rows) if level == "patient" else rows


def roc_points(predictions: pd.DataFrame, seed: int, resamples: int = BAND_RESAMPLES) -> pd.DataFrame:
    """Per model (rows of one model have y_true, probability, patient_id) and level (lesion,
    patient): the exact ROC points (`kind` curve) and the 95% patient-bootstrap band of the true-
    positive rate on GRID (`kind` band). A model whose test patients hold one class has no curve."""
    out = []
    for model_id, rows in predictions.groupby("model_id", sort=True):
        rows = rows.reset_index(drop=True)
        if rows["y_true"].nunique() < 2:
            continue
        draws = list(patient_draws(rows, resamples, seed))
        for level in ("lesion", "patient"):
            scored = _level_rows(rows, level)
            fpr, tpr, _ = roc_curve(scored["y_true"], scored["probability"])
            out.append(pd.DataFrame({"model_id": model_id, "level": level, "kind": "curve", "fpr": fpr, "tpr": tpr}))
            bands = []
            for lesion_rows, patients in draws:
                drawn = rows.iloc[lesion_rows] if level == "lesion" else scored.iloc[patients]
                bands.append(_tpr_on_grid(drawn["y_true"].to_numpy(), drawn["probability"].to_numpy()))
            low, high = np.percentile(np.vstack(bands), [2.5, 97.5], axis=0)
            out.append(
                pd.DataFrame(
                    {"model_id": model_id, "level": level, "kind": "band", "fpr": GRID, "tpr": low, "tpr_high": high}
                )
            )
    return _frame(out, ["model_id", "level", "kind", "fpr", "tpr", "tpr_high"])


def cv_roc(cv_predictions: pd.DataFrame) -> pd.DataFrame:
    """The nested CV's ROC per model: the true-positive rate on GRID, averaged over the outer folds
    (every repeat), with the number of folds that held both classes."""
    out = []
    for model_id, rows in cv_predictions.groupby("model_id", sort=True):
        curves = [
            _tpr_on_grid(fold["y_true"].to_numpy(), fold["probability"].to_numpy())
            for _, fold in rows.groupby(["repeat", "fold"])
            if fold["y_true"].nunique() == 2
        ]
        if curves:
            out.append(
                pd.DataFrame({"model_id": model_id, "fpr": GRID, "tpr": np.mean(curves, axis=0), "folds": len(curves)})
            )
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["model_id", "fpr", "tpr", "folds"])


def auc_from_points(points: pd.DataFrame) -> float:
    """The area under a `kind` curve's exact points (trapezoids): the AUC the table reports."""
    return float(np.trapezoid(points["tpr"], points["fpr"]))


def reliability(predictions: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Per model, observed share of the positive class against the mean predicted probability in
    quantile bins of the test lesions' probabilities, and each model's lesion-level Brier score."""
    out = []
    for model_id, rows in predictions.groupby("model_id", sort=True):
        y, p = rows["y_true"].to_numpy(), rows["probability"].to_numpy()
        observed, predicted = calibration_curve(y, p, n_bins=min(bins, len(np.unique(p))), strategy="quantile")
        brier = float(np.mean((p - y) ** 2))
        out.append(pd.DataFrame({"model_id": model_id, "predicted": predicted, "observed": observed, "brier": brier}))
    return (
        pd.concat(out, ignore_index=True)
        if out
        else pd.DataFrame(columns=["model_id", "predicted", "observed", "brier"])
    )


def lesion_grid(predictions: pd.DataFrame, models: list[str], classes: tuple[str, ...]) -> pd.DataFrame:
    """Fig. 4's cells: one row per test lesion (grouped by class, then patient), one column per
    model; `p_true` is the probability the model gave the lesion's true class, `correct` whether
    its predicted label (at the fixed 0.5 threshold) is the true one."""
    order = {c: i for i, c in enumerate(classes)}
    cells = predictions[predictions["model_id"].isin(models)].assign(
        p_true=lambda f: np.where(f["y_true"] == 1, f["probability"], 1 - f["probability"]),
        correct=lambda f: f["predicted_label"] == f["label"],
        class_order=lambda f: f["label"].map(order),
    )
    return cells.sort_values(["class_order", "patient_id", "lesion_id"])[
        ["lesion_id", "patient_id", "label", "model_id", "probability", "p_true", "correct"]
    ].reset_index(drop=True)
