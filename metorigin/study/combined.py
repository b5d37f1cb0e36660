"""Radiomics and DenseNet together: the mean of their lesion probabilities, or a stacked model
over them when the validation patients are enough to fit one.

The stacker may only learn from probabilities that neither model produced for lesions it had
trained on. The DenseNet never trains on the validation patients, and the radiomics model's
probabilities for them are out of fold (grouped by patient), so the stacker is fitted on the
validation patients' lesions; the test patients stay untouched until the final score. Both inputs
are mildly optimistic all the same (the validation patients chose the DenseNet's epoch; the
out-of-fold folds are those that tuned the radiomics model), which can only flatter the stacker's
weights, never its test score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from metorigin.core.study import LabelSettings
from metorigin.study.evaluation import labels

# A stacker learns two weights from the validation patients; with fewer than this many patients of a
# class, it would learn them from a handful of people (their lesions are not independent draws).
MIN_PATIENTS_PER_CLASS = 3


def best_radiomics_model(metrics: pd.DataFrame) -> pd.Series:
    """Chosen by nested cross-validation on the training patients, never by a test score."""
    return metrics.sort_values(["cv_auc", "model_id"], ascending=[False, True]).iloc[0]


def _logit(p: pd.Series) -> np.ndarray:
    q = np.clip(p.to_numpy(dtype=float), 1e-4, 1 - 1e-4)
    return np.log(q / (1 - q))


@dataclass
class Stacked:
    predictions: pd.DataFrame  # the validation (fit) and test lesions with the combined probability
    how: dict  # method, and the weights when fitted
    stacker: LogisticRegression | None  # None when the two probabilities are averaged
    fit_rows: pd.DataFrame  # what the stacker learned from (validation lesions)


def _features(pairs: pd.DataFrame) -> np.ndarray:
    return np.column_stack([_logit(pairs["probability_radiomics"]), _logit(pairs["probability_densenet"])])


def stack(radiomics: pd.DataFrame, densenet: pd.DataFrame, label: LabelSettings, seed: int) -> Stacked:
    """`radiomics`: one model's rows (evaluation out_of_fold / test); `densenet`: validation / test.

    The two probabilities are averaged, unless the validation set holds at least
    `MIN_PATIENTS_PER_CLASS` patients of each class (patients, not lesions): then a logistic stacker
    with balanced class weights is fitted on their lesions. The method says which, and why.
    """
    keys = ["lesion_id", "scan_id", "patient_id", "label"]
    pairs = {}
    for name, (rad_eval, cnn_eval) in {"fit": ("out_of_fold", "validation"), "test": ("test", "test")}.items():
        rad = radiomics.loc[radiomics["evaluation"] == rad_eval, [*keys, "probability"]]
        cnn = densenet.loc[densenet["evaluation"] == cnn_eval, ["lesion_id", "probability"]]
        pairs[name] = rad.merge(cnn, on="lesion_id", suffixes=("_radiomics", "_densenet"))
    fit = pairs["fit"].copy()
    y = labels(fit, label)
    test = pairs["test"].copy()
    stacker = None
    per_class = fit.groupby("label")["patient_id"].nunique().reindex([label.negative, label.positive], fill_value=0)
    if per_class.min() >= MIN_PATIENTS_PER_CLASS:
        stacker = LogisticRegression(C=1.0, class_weight="balanced", random_state=seed).fit(_features(fit), y)
        how = {
            "method": "logistic stacking (balanced class weights) on the validation patients' lesions",
            "fit_lesions": len(fit),
            "fit_patients": per_class.to_dict(),
            "weights": [float(w) for w in stacker.coef_[0]],
            "intercept": float(stacker.intercept_[0]),
        }
    else:
        how = {
            "method": f"mean of the two probabilities (fewer than {MIN_PATIENTS_PER_CLASS} validation patients "
            "of a class to fit a stacker on)",
            "fit_lesions": len(fit),
            "fit_patients": per_class.to_dict(),
        }
    for rows in (fit, test):
        rows["probability"] = combined_probability(stacker, rows)
    scored = pd.concat([fit.assign(evaluation="validation"), test.assign(evaluation="test")], ignore_index=True)
    return Stacked(scored, how, stacker, fit)


def combined_probability(stacker: LogisticRegression | None, pairs: pd.DataFrame) -> np.ndarray:
    """The combined model's probability from its two inputs (`probability_radiomics`,
    `probability_densenet`): the stacker's, or their mean when none was fitted. Training, scoring
    new patients and external validation all go through here, so they cannot disagree."""
    if stacker is None:
        return ((pairs["probability_radiomics"] + pairs["probability_densenet"]) / 2).to_numpy()
    return stacker.predict_proba(_features(pairs))[:, 1]
