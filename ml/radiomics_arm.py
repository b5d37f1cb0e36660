"""The radiomics arm end to end: the study's classifiers x resamplers, tuned, tested, cross-validated.

Two estimates per model, side by side: the study's single split (8 test patients, with patient
bootstrap intervals that show how wide that is) and repeated grouped cross-validation over all
patients, where the redundancy filter is refitted on each training fold and each model keeps the
hyper-parameters tuned on the study's training patients.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import product

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict

from base.study import LabelSettings, ModelSettings

from .classifiers import build_pipeline, classifier, tune
from .evaluation import accuracy, labels, predicted_labels, roc_auc, summarise_folds, test_metrics
from .registry import data_hash, model_id
from .selection import drop_correlated
from .split import test_patients, training_patients

ID_COLUMNS = ["lesion_id", "scan_id", "patient_id", "label"]


def feature_columns(matrix: pd.DataFrame) -> list[str]:
    return [c for c in matrix.columns if c not in ID_COLUMNS]


@dataclass
class FittedModel:
    model_id: str
    classifier: str
    resampler: str
    pipeline: object
    card: dict


@dataclass
class ArmResult:
    models: list[FittedModel]
    predictions: pd.DataFrame  # one row per lesion and model: test lesions, and out-of-fold training lesions
    metrics: pd.DataFrame  # one row per model


def _fit_one(
    name: str,
    resampler: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    features: list[str],
    settings: ModelSettings,
    label: LabelSettings,
    seed: int,
) -> tuple[FittedModel, pd.DataFrame, float]:
    spec = classifier(name, settings.grids)
    x, y, groups = train[features], labels(train, label), train["patient_id"].to_numpy()
    tuned = tune(spec, resampler, x, y, groups, seed, settings.tuning_folds)
    # Out-of-fold probabilities for the training patients: what a stacked model may learn from.
    splitter = StratifiedGroupKFold(n_splits=settings.tuning_folds, shuffle=True, random_state=seed)
    oof = cross_val_predict(
        build_pipeline(spec, resampler, seed, tuned.params), x, y, groups=groups, cv=splitter, method="predict_proba"
    )[:, 1]
    card = {
        "arm": "radiomics",
        "classifier": name,
        "resampler": resampler,
        "features": features,
        "params": tuned.params,
        "seed": seed,
        "tuning_cv_auc": tuned.cv_auc,
        "training_data_sha256": data_hash(x, y),
        "training_patients": int(len(set(groups))),
        "training_lesions": int(len(x)),
        "positive_class": label.positive,
    }
    identifier = model_id(f"{name}_{resampler}", card)
    rows = pd.concat(
        [
            test[ID_COLUMNS].assign(evaluation="test", probability=tuned.pipeline.predict_proba(test[features])[:, 1]),
            train[ID_COLUMNS].assign(evaluation="out_of_fold", probability=oof),
        ],
        ignore_index=True,
    )
    rows = rows.assign(model_id=identifier, arm="radiomics", model=name, resampler=resampler)
    return FittedModel(identifier, name, resampler, tuned.pipeline, card), rows, tuned.cv_auc


def _fold_score(
    name: str,
    resampler: str,
    params: dict,
    fold_train: pd.DataFrame,
    fold_test: pd.DataFrame,
    features: list[str],
    label: LabelSettings,
    seed: int,
) -> dict:
    pipeline = build_pipeline(classifier(name), resampler, seed, params)
    pipeline.fit(fold_train[features], labels(fold_train, label))
    probability = pipeline.predict_proba(fold_test[features])[:, 1]
    y = labels(fold_test, label)
    return {"auc": roc_auc(y, probability), "accuracy": accuracy(y, probability)}


def repeated_cv_folds(
    matrix: pd.DataFrame, settings: ModelSettings, label: LabelSettings, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Patient-grouped, class-stratified folds, reshuffled per repeat with seed + repeat."""
    y, groups = labels(matrix, label), matrix["patient_id"].to_numpy()
    return [
        split
        for repeat in range(settings.cv_repeats)
        for split in StratifiedGroupKFold(n_splits=settings.cv_folds, shuffle=True, random_state=seed + repeat).split(
            matrix, y, groups
        )
    ]


def split_effect(
    matrix: pd.DataFrame, features: list[str], settings: ModelSettings, label: LabelSettings, seed: int
) -> dict[str, float]:
    """Out-of-fold AUC of one model under a lesion-level and a patient-level split of the same rows.

    The gap is what splitting by lesion would have added to every number in Table 3: lesions of
    one patient resemble each other, so a model that has seen a patient's other lesions is scored
    on a memory, not on a diagnosis. We report it so a cohort's own per-patient effect is visible.
    """
    x, y, groups = matrix[features], labels(matrix, label), matrix["patient_id"].to_numpy()
    pipeline = build_pipeline(classifier("knn"), "smote", seed, {"n_neighbors": 5})
    by_lesion = StratifiedKFold(n_splits=settings.cv_folds, shuffle=True, random_state=seed)
    by_patient = StratifiedGroupKFold(n_splits=settings.cv_folds, shuffle=True, random_state=seed)
    return {
        f"{name}_split_auc": roc_auc(
            y, cross_val_predict(pipeline, x, y, groups=grouping, cv=cv, method="predict_proba")[:, 1]
        )
        for name, cv, grouping in (("lesion", by_lesion, None), ("patient", by_patient, groups))
    }


def usable_folds(rows: pd.DataFrame, wanted: int) -> int:
    """Grouped, stratified folds need each class's patients in every fold: a small cohort gets
    fewer folds (at least two) instead of an error deep inside scikit-learn."""
    per_class = rows.groupby("label")["patient_id"].nunique()
    folds = min(wanted, int(per_class.min())) if len(per_class) == 2 else 0
    if folds < 2:
        raise ValueError(
            f"too few patients for grouped cross-validation ({per_class.to_dict()} per class; "
            "at least 2 of each class must be training patients): add patients to the cohort"
        )
    return folds


def fitting_settings(settings: ModelSettings, train: pd.DataFrame, everyone: pd.DataFrame) -> ModelSettings:
    return replace(
        settings,
        tuning_folds=usable_folds(train, settings.tuning_folds),
        cv_folds=usable_folds(everyone, settings.cv_folds),
    )


def fit_radiomics_arm(
    matrix: pd.DataFrame,
    split: pd.DataFrame,
    features: list[str],
    settings: ModelSettings,
    label: LabelSettings,
    seed: int,
) -> ArmResult:
    """Tune and fit every classifier x resampler pipeline the study names on the training patients,
    score the test patients, and cross-validate every pipeline over all patients."""
    train = matrix[matrix["patient_id"].isin(training_patients(split))].reset_index(drop=True)
    test = matrix[matrix["patient_id"].isin(test_patients(split))].reset_index(drop=True)
    settings = fitting_settings(settings, train, matrix)
    combos = list(product(settings.classifiers, settings.resamplers))
    parallel = Parallel(n_jobs=settings.workers)
    fitted = parallel(
        delayed(_fit_one)(name, res, train, test, features, settings, label, seed) for name, res in combos
    )

    folds = repeated_cv_folds(matrix, settings, label, seed)
    all_features = feature_columns(matrix)
    fold_features = [
        drop_correlated(matrix.iloc[fit_rows][all_features], settings.max_abs_correlation).kept for fit_rows, _ in folds
    ]
    tasks = [
        (model.classifier, model.resampler, model.card["params"], k)
        for model, _, _ in fitted
        for k in range(len(folds))
    ]
    scores = parallel(
        delayed(_fold_score)(
            name, res, params, matrix.iloc[folds[k][0]], matrix.iloc[folds[k][1]], fold_features[k], label, seed
        )
        for name, res, params, k in tasks
    )
    fold_table = pd.DataFrame([{"model_id": fitted[i // len(folds)][0].model_id, **s} for i, s in enumerate(scores)])

    metric_rows = []
    for model, rows, cv_auc in fitted:
        tested = rows[rows["evaluation"] == "test"].assign(y_true=lambda f: labels(f, label))
        metric_rows.append(
            {
                "model_id": model.model_id,
                "arm": "radiomics",
                "model": model.classifier,
                "resampler": model.resampler,
                **test_metrics(tested, settings.bootstrap_resamples, seed),
                **summarise_folds(fold_table[fold_table["model_id"] == model.model_id]),
                "tuning_cv_auc": cv_auc,
                "n_features": len(features),
                "params": str(model.card["params"]),
                "seed": seed,
                "training_data_sha256": model.card["training_data_sha256"],
            }
        )
    predictions = pd.concat([rows for _, rows, _ in fitted], ignore_index=True)
    predictions["predicted_label"] = predicted_labels(predictions["probability"], label)
    return ArmResult(models=[m for m, _, _ in fitted], predictions=predictions, metrics=pd.DataFrame(metric_rows))
