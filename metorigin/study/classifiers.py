"""The study's eight classifiers and two resamplers, as imbalanced-learn pipelines tuned by patient.

Each pipeline is impute -> standardise -> resample -> classify, so every step that learns from data
(medians, means, synthetic minority samples, the model) is fitted inside the training fold only.
Grids are small on purpose: the study tuned "if applicable", and with ~70 training patients a wide
grid mostly fits the noise of the tuning folds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import pandas as pd
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline
from imblearn.under_sampling import RandomUnderSampler
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from xgboost import XGBClassifier

from metorigin.core.errors import StudyFileError
from metorigin.core.study import ModelSettings


class MarginSVM(SVC):
    """An SVM whose `predict_proba` is the logistic of its margin: a score to rank by (what tuning
    and AUC need), made a probability afterwards by `platt_scale` on out-of-fold training lesions.
    (scikit-learn's own Platt scaling cross-validates inside the pipeline, after the resampler: on
    folds of lesions, not patients, with synthetic samples made from the other folds.)"""

    def predict_proba(self, x) -> np.ndarray:
        margin = expit(self.decision_function(x))
        return np.column_stack([1 - margin, margin])


@dataclass
class PlattScaled:
    """A fitted pipeline and the logistic line from its probabilities' logit to calibrated ones,
    fitted on patient-grouped out-of-fold probabilities of the training lesions as they are."""

    pipeline: Pipeline
    intercept: float
    slope: float

    def calibrate(self, probability) -> np.ndarray:
        return expit(self.intercept + self.slope * _logit(probability))

    def predict_proba(self, x) -> np.ndarray:
        calibrated = self.calibrate(self.pipeline.predict_proba(x)[:, 1])
        return np.column_stack([1 - calibrated, calibrated])

    def describe(self) -> dict:
        return {
            "method": "platt on nested out-of-fold probabilities of the training patients",
            "intercept": self.intercept,
            "slope": self.slope,
        }


def _logit(probability) -> np.ndarray:
    p = np.clip(np.asarray(probability, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)).reshape(-1)


def platt_scale(pipeline: Pipeline, out_of_fold, y) -> PlattScaled:
    """Platt scaling (a logistic regression on the logit of the probability, unpenalised) of a
    fitted pipeline, learnt from its out-of-fold probabilities for the training lesions."""
    line = LogisticRegression(C=np.inf).fit(_logit(out_of_fold).reshape(-1, 1), np.asarray(y))
    return PlattScaled(pipeline, float(line.intercept_[0]), float(line.coef_[0, 0]))


@dataclass(frozen=True)
class Classifier:
    name: str
    make: Callable[[int], BaseEstimator]  # seed -> unfitted estimator (single-threaded; we parallelise fits)
    grid: dict[str, list]


CLASSIFIERS: tuple[Classifier, ...] = (
    Classifier(
        "xgboost",
        lambda seed: XGBClassifier(
            n_estimators=200, learning_rate=0.1, tree_method="hist", n_jobs=1, random_state=seed, verbosity=0
        ),
        {"max_depth": [2, 4]},
    ),
    Classifier(
        "random_forest",
        lambda seed: RandomForestClassifier(n_estimators=200, n_jobs=1, random_state=seed),
        {"min_samples_leaf": [1, 5]},
    ),
    # SVMs give margins, not probabilities (every model is Platt-scaled after the nested CV).
    Classifier("linear_svm", lambda seed: MarginSVM(kernel="linear"), {"C": [0.1, 1.0]}),
    Classifier("kernel_svm", lambda seed: MarginSVM(kernel="rbf"), {"C": [1.0, 10.0]}),
    Classifier("knn", lambda seed: KNeighborsClassifier(), {"n_neighbors": [5, 15, 31]}),
    Classifier("logistic_regression", lambda seed: LogisticRegression(max_iter=2000), {"C": [0.1, 1.0, 10.0]}),
    Classifier("naive_bayes", lambda seed: GaussianNB(), {}),
    Classifier("decision_tree", lambda seed: DecisionTreeClassifier(random_state=seed), {"max_depth": [3, 6]}),
)

RESAMPLERS: dict[str, Callable[[int], BaseEstimator]] = {
    "smote": lambda seed: SMOTE(random_state=seed),
    "undersampling": lambda seed: RandomUnderSampler(random_state=seed),
}


def classifier(name: str, grids: dict[str, dict] | None = None) -> Classifier:
    """The named classifier, with the study file's grid in place of the built-in one when it gives one."""
    for spec in CLASSIFIERS:
        if spec.name == name:
            grid = (grids or {}).get(name)
            return spec if grid is None else replace(spec, grid={k: list(v) for k, v in grid.items()})
    raise KeyError(f"unknown classifier {name!r}; choose one of {', '.join(c.name for c in CLASSIFIERS)}")


def grid_problems(models: ModelSettings, source: str) -> list[StudyFileError]:
    """Grid parameters the study file names that its classifier does not have (caught before any
    work, not deep inside a grid search)."""
    problems = []
    for name, grid in models.grids.items():
        known = classifier(name).make(0).get_params()
        for param in sorted(set(grid) - set(known)):
            problems.append(
                StudyFileError(
                    source,
                    f"models.grids.{name}.{param}",
                    f"{name} has no hyper-parameter {param!r}",
                    f"use one of {', '.join(sorted(known)[:20])}",
                )
            )
    return problems


def build_pipeline(spec: Classifier, resampler: str, seed: int, params: dict | None = None) -> Pipeline:
    pipeline = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
            ("resample", RESAMPLERS[resampler](seed)),
            ("model", spec.make(seed)),
        ]
    )
    return pipeline.set_params(**{f"model__{k}": v for k, v in (params or {}).items()})


@dataclass
class Tuned:
    pipeline: Pipeline  # refitted on all training patients with the best parameters
    params: dict
    cv_auc: float  # mean ROC AUC over the grouped tuning folds, at the best parameters


def tune(
    spec: Classifier, resampler: str, x: pd.DataFrame, y: np.ndarray, groups: np.ndarray, seed: int, folds: int
) -> Tuned:
    """Grid search with folds grouped by patient, scored by ROC AUC, on training patients only.

    A candidate that cannot fit a small cohort's folds (more neighbours than samples) scores NaN
    and is passed over, with scikit-learn's warning; if none fits, the refit raises.
    """
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    search = GridSearchCV(
        build_pipeline(spec, resampler, seed),
        {f"model__{k}": v for k, v in spec.grid.items()} or [{}],
        scoring="roc_auc",
        cv=splitter,
        n_jobs=1,
        refit=True,
        error_score=np.nan,
    )
    search.fit(x, y, groups=groups)
    params = {k.removeprefix("model__"): v for k, v in search.best_params_.items()}
    return Tuned(pipeline=search.best_estimator_, params=params, cv_auc=float(search.best_score_))
