"""Nested cross-validation on pure noise: what it guards against, shown against the leaky way."""

from __future__ import annotations

import numpy as np
import pandas as pd
from joblib import Parallel
from sklearn.model_selection import StratifiedGroupKFold

from metorigin.core.study import LabelSettings, ModelSettings
from metorigin.study.classifiers import build_pipeline, classifier, tune
from metorigin.study.evaluation import corrected_interval, labels, roc_auc
from metorigin.study.radiomics_arm import nested_cv

from .helpers import noise_matrix

LABEL = LabelSettings()
SETTINGS = ModelSettings(
    classifiers=("logistic_regression",), resamplers=("smote",), cv_repeats=2, cv_folds=5, tuning_folds=3, workers=1
)


def _leaky_cv_auc(matrix: pd.DataFrame, keep: int = 5) -> float:
    """The way not to: the features most associated with the label and the hyper-parameters chosen on
    every patient, then cross-validated: the held-out patients helped choose both."""
    y, groups = labels(matrix, LABEL), matrix["patient_id"].to_numpy()
    features = [c for c in matrix.columns if c.startswith("f")]
    association = {f: abs(roc_auc(y, matrix[f].to_numpy()) - 0.5) for f in features}
    chosen = sorted(features, key=association.get, reverse=True)[:keep]
    model = classifier("logistic_regression")
    params = tune(model, "smote", matrix[chosen], y, groups, 0, 3).params
    aucs = []
    for fit, held in StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0).split(matrix, y, groups):
        pipeline = build_pipeline(model, "smote", 0, params).fit(matrix.iloc[fit][chosen], y[fit])
        aucs.append(roc_auc(y[held], pipeline.predict_proba(matrix.iloc[held][chosen])[:, 1]))
    return float(np.mean(aucs))


def test_on_noise_nested_cv_stays_near_chance_where_choosing_outside_the_folds_does_not():
    matrix = noise_matrix()
    nested = nested_cv(matrix, [("logistic_regression", "smote")], SETTINGS, LABEL, seed=0, parallel=Parallel(n_jobs=1))
    folds = nested.folds
    assert len(folds) == 10 and set(folds["repeat"]) == {0, 1}
    nested_auc = folds["auc"].mean()
    low, high = corrected_interval(folds["auc"], folds["n_train_lesions"].mean(), folds["n_test_lesions"].mean())
    assert abs(nested_auc - 0.5) < 0.1 and low < 0.5 < high
    assert _leaky_cv_auc(matrix) > nested_auc + 0.1
    # Each training lesion is held out once per repeat, and only by a fold that did not train on it.
    assert nested.held_out.groupby("repeat")["lesion_id"].agg(lambda ids: ids.is_unique and len(ids) == 120).all()


def test_the_corrected_interval_is_wider_than_the_naive_one():
    scores = np.array([0.6, 0.7, 0.65, 0.55, 0.72, 0.68, 0.61, 0.59, 0.66, 0.7])
    low, high = corrected_interval(scores, n_train=80, n_test=20)
    naive = scores.std(ddof=1) / np.sqrt(len(scores)) * 2.262  # t(0.975, 9)
    assert high - scores.mean() > naive and low < scores.mean() < high
    assert np.isnan(corrected_interval([0.7], 80, 20)[0])


def test_the_corrected_interval_of_two_folds_stays_within_the_auc_range():
    """Two outer folds (the issue's case gave [-1.90, 3.55]): the t quantile on one degree of freedom
    is 12.7, and the interval is clipped to what an AUC can be."""
    low, high = corrected_interval([0.45, 0.95], n_train=40, n_test=40)
    assert (low, high) == (0.0, 1.0)
    low, high = corrected_interval([0.70, 0.71], n_train=40, n_test=40)
    assert 0.0 < low < 0.705 < high < 1.0  # unclipped where it fits
    assert all(np.isnan(corrected_interval([0.6, np.nan, 0.7], n_train=40, n_test=float("nan"))))  # NaN stays NaN
