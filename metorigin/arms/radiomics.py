"""The radiomics arm: every classifier x resampler the study names (the paper's 8 x {SMOTE,
undersampling}) on the features Table 2 kept, with nested cross-validation on the training patients
(metorigin/study/radiomics_arm.py)."""

from __future__ import annotations

from typing import Any, Callable

import pandas as pd

from metorigin.arms._shared import saved_metrics, score_features, table3_metadata
from metorigin.study.arm import Arm, ArmInputs, ArmOutput, LesionData
from metorigin.study.radiomics_arm import fit_radiomics_arm, fitting_settings, split_effect
from metorigin.study.registry import provenance


def train(inputs: ArmInputs) -> ArmOutput:
    """Every classifier x resampler the study names (the paper's 8 x {SMOTE, undersampling}): nested
    CV on the training patients, then tuned on all of them, Platt-scaled on the nested out-of-fold
    probabilities, and scored on the test patients with bootstrap intervals."""
    study, importance = inputs.study, inputs.tables["feature_importance"]
    matrix = inputs.training_matrix()
    features = importance.loc[importance["kept"], "feature_name"].tolist()
    inputs.log(
        f"fitting {study.models.n_pipelines} pipelines on {len(features)} features, {study.models.workers} worker(s)"
    )
    result = fit_radiomics_arm(matrix, inputs.tables["patient_split"], features, study.models, study.label, study.seed)
    leakage = split_effect(matrix, features, fitting_settings(study.models, matrix), study.label, study.seed)
    settings_hash = study.step_hash("radiomics_models")
    metrics = saved_metrics(inputs.store, result, settings_hash, provenance(study, "lesions", "radiomics"))
    return ArmOutput(
        metrics=metrics,
        predictions=result.predictions.assign(settings_hash=settings_hash),
        extras={
            "radiomics_cv_folds": result.cv_folds.assign(settings_hash=settings_hash),
            "radiomics_cv_predictions": result.cv_predictions.assign(settings_hash=settings_hash),
        },
        metadata={
            "radiomics_metrics": {**table3_metadata(metrics), **leakage},
            "radiomics_predictions": {"n_test_rows": int((result.predictions["evaluation"] == "test").sum())},
            "radiomics_cv_folds": {"outer_folds": int(result.cv_folds.groupby("model_id").size().max())},
        },
    )


def score(pipeline: Any, model: Any, lesions: LesionData, component: Callable[[str], pd.Series]) -> pd.Series:
    return score_features(pipeline, model, lesions.wide)


ARM = Arm(
    name="radiomics",
    title="Radiomics (classifiers x resamplers)",
    asset="radiomics_models",
    train=train,
    settings_step="radiomics_models",
    # 2: nested CV on the training patients, Platt scaling on its out-of-fold probabilities.
    # 3: Platt on every repeat's held-out probability, not on their mean over repeats.
    # 4 (and the other arms' next revision): cards record the training patients, the settings their
    # inputs were made under and the training features' spread, which scoring checks.
    # 5 (and the baselines' and combined model's next): model files are skops data, not pickles.
    # 6 (metrics only): the nested-CV interval is clipped to [0, 1].
    revisions={
        "radiomics_metrics": 6,
        "radiomics_predictions": 5,
        "radiomics_cv_folds": 1,
        "radiomics_cv_predictions": 1,
    },
    threshold_from=("out_of_fold", "out-of-fold, training patients"),
    descriptions={
        "radiomics_metrics": "Table 3, radiomics arm: one row per model",
        "radiomics_predictions": "per-lesion probabilities of every model",
        "radiomics_cv_folds": "nested CV on the training patients: one row per model, repeat and outer fold",
        "radiomics_cv_predictions": "nested CV: every training lesion's held-out probability, per model and repeat",
    },
    reads=("patient_split", "feature_importance"),
    score=score,
)
