"""Radiomics and DenseNet together: a stacked model over their lesion probabilities.

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

from base.study import LabelSettings

from .evaluation import labels

MIN_LESIONS_TO_FIT = 10


def best_radiomics_model(metrics: pd.DataFrame) -> pd.Series:
    """Chosen by the tuning cross-validation on training patients, never by a test score."""
    return metrics.sort_values(["tuning_cv_auc", "model_id"], ascending=[False, True]).iloc[0]


def _logit(p: pd.Series) -> np.ndarray:
    q = np.clip(p.to_numpy(dtype=float), 1e-4, 1 - 1e-4)
    return np.log(q / (1 - q))


@dataclass
class Stacked:
    predictions: pd.DataFrame  # the test lesions with the combined probability
    how: dict  # method, and the weights when fitted
    stacker: LogisticRegression | None  # None when the two probabilities are averaged
    fit_rows: pd.DataFrame  # what the stacker learned from (validation lesions)


def _features(pairs: pd.DataFrame) -> np.ndarray:
    return np.column_stack([_logit(pairs["probability_radiomics"]), _logit(pairs["probability_densenet"])])


def stack(radiomics: pd.DataFrame, densenet: pd.DataFrame, label: LabelSettings, seed: int) -> Stacked:
    """`radiomics`: one model's rows (evaluation out_of_fold / test); `densenet`: validation / test.

    With too few validation lesions, or only one class among them, nothing can be fitted honestly
    and the two probabilities are averaged instead (and the method says so).
    """
    keys = ["lesion_id", "scan_id", "patient_id", "label"]
    pairs = {}
    for name, (rad_eval, cnn_eval) in {"fit": ("out_of_fold", "validation"), "test": ("test", "test")}.items():
        rad = radiomics.loc[radiomics["evaluation"] == rad_eval, [*keys, "probability"]]
        cnn = densenet.loc[densenet["evaluation"] == cnn_eval, ["lesion_id", "probability"]]
        pairs[name] = rad.merge(cnn, on="lesion_id", suffixes=("_radiomics", "_densenet"))
    fit = pairs["fit"]
    y = labels(fit, label)
    test = pairs["test"].copy()
    stacker = None
    if len(fit) >= MIN_LESIONS_TO_FIT and len(np.unique(y)) == 2:
        stacker = LogisticRegression(C=1.0, random_state=seed).fit(_features(fit), y)
        test["probability"] = stacker.predict_proba(_features(test))[:, 1]
        how = {
            "method": "logistic stacking on the validation patients' lesions",
            "fit_lesions": len(fit),
            "weights": [float(w) for w in stacker.coef_[0]],
            "intercept": float(stacker.intercept_[0]),
        }
    else:
        test["probability"] = (test["probability_radiomics"] + test["probability_densenet"]) / 2
        how = {
            "method": "mean of the two probabilities (too few validation lesions, or one class, to fit)",
            "fit_lesions": len(fit),
        }
    return Stacked(test.assign(evaluation="test"), how, stacker, fit)
