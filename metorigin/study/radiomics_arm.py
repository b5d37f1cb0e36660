"""The radiomics arm end to end: the study's classifiers x resamplers, estimated by nested
cross-validation on the training patients, calibrated, tuned and tested.

Nested, repeated, patient-grouped cross-validation on the training patients only: in each outer
fold the redundancy filter is refitted and the hyper-parameters are tuned (inner grouped CV) on the
fold's training part alone, and the fold's held-out patients are scored once. So no held-out
patient helped choose anything about the model that scores it, and the test patients take no part
at all: the mean held-out AUC (with a Nadeau-Bengio interval, because the folds share training
patients) is what chooses the best model. Each model's Platt scaling is fitted on its held-out
probabilities of every repeat (real, un-resampled training lesions; never a synthetic one); the
calibrated ones, averaged over repeats, are its out-of-fold predictions, from which the combined
model and the out-of-fold thresholds learn. The final model is tuned on all training patients and
scores the test patients once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from itertools import product

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict

from metorigin.core.study import LabelSettings, ModelSettings
from metorigin.study.classifiers import build_pipeline, classifier, platt_scale, tune
from metorigin.study.evaluation import accuracy, labels, predicted_labels, roc_auc, summarise_folds, test_metrics
from metorigin.study.registry import data_hash, model_id
from metorigin.study.scoring import feature_reference
from metorigin.study.selection import drop_correlated
from metorigin.study.split import test_patients, training_patients

ID_COLUMNS = ["lesion_id", "scan_id", "patient_id", "label"]


def feature_columns(matrix: pd.DataFrame) -> list[str]:
    return [c for c in matrix.columns if c not in ID_COLUMNS]


@dataclass(frozen=True)
class ArmSpec:
    """Which rows of Table 3 a fit makes: the radiomics arm (the filter refitted in every outer fold on
    the candidate features), or a baseline (its own few features, used as given; `model` names it)."""

    arm: str = "radiomics"
    model: str | None = None  # the `model` column; the classifier's name when None
    fixed_features: bool = False


RADIOMICS = ArmSpec()


@dataclass
class FittedModel:
    model_id: str
    classifier: str
    resampler: str
    pipeline: object  # the tuned pipeline with its Platt scaling (classifiers.PlattScaled)
    card: dict


@dataclass
class ArmResult:
    models: list[FittedModel]
    predictions: pd.DataFrame  # one row per lesion and model: test lesions, and out-of-fold training lesions
    metrics: pd.DataFrame  # one row per model
    cv_folds: pd.DataFrame  # one row per model, repeat and outer fold of the nested CV
    cv_predictions: pd.DataFrame  # one row per model, repeat and training lesion: its held-out probability


def repeated_cv_folds(
    rows: pd.DataFrame, settings: ModelSettings, label: LabelSettings, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Patient-grouped, class-stratified folds, reshuffled per repeat with seed + repeat."""
    y, groups = labels(rows, label), rows["patient_id"].to_numpy()
    return [
        split
        for repeat in range(settings.cv_repeats)
        for split in StratifiedGroupKFold(n_splits=settings.cv_folds, shuffle=True, random_state=seed + repeat).split(
            rows, y, groups
        )
    ]


def _outer_fold(
    name: str,
    resampler: str,
    fold_train: pd.DataFrame,
    held_out: pd.DataFrame,
    features: list[str],
    settings: ModelSettings,
    label: LabelSettings,
    seed: int,
) -> tuple[dict, np.ndarray]:
    """One outer fold: tuned on its training part alone, its held-out patients scored once. A part
    too small for two inner folds of each class keeps the first candidate of each parameter."""
    model = classifier(name, settings.grids)
    x, y = fold_train[features], labels(fold_train, label)
    inner = min(settings.tuning_folds, int(fold_train.groupby("label")["patient_id"].nunique().min()))
    if inner >= 2:
        tuned = tune(model, resampler, x, y, fold_train["patient_id"].to_numpy(), seed, inner)
        pipeline, params = tuned.pipeline, tuned.params
    else:
        params = {k: v[0] for k, v in model.grid.items()}
        pipeline = build_pipeline(model, resampler, seed, params).fit(x, y)
    probability = pipeline.predict_proba(held_out[features])[:, 1]
    y = labels(held_out, label)
    scores = {
        "auc": roc_auc(y, probability),
        "accuracy": accuracy(y, probability),
        "params": json.dumps(params, default=str),
        "tuned": inner >= 2,
        "n_features": len(features),
    }
    return scores, probability


@dataclass
class NestedCV:
    folds: pd.DataFrame  # classifier, resampler, repeat, fold, auc, accuracy, params, sizes
    held_out: pd.DataFrame  # classifier, resampler, repeat, fold, the lesion's ids, probability


def nested_cv(
    train: pd.DataFrame,
    combos: list[tuple[str, str]],
    settings: ModelSettings,
    label: LabelSettings,
    seed: int,
    parallel: Parallel,
    fixed_features: list[str] | None = None,
) -> NestedCV:
    """Every pipeline through the same outer folds of the training patients, each fold with its
    own redundancy filter (fitted on the fold's training part; a baseline's `fixed_features` are
    used as they are) and its own tuning."""
    folds = repeated_cv_folds(train, settings, label, seed)
    candidates = feature_columns(train)
    kept = [
        fixed_features or drop_correlated(train.iloc[fit][candidates], settings.max_abs_correlation).kept
        for fit, _ in folds
    ]
    tasks = [(name, resampler, k) for name, resampler in combos for k in range(len(folds))]
    results = parallel(
        delayed(_outer_fold)(
            name, resampler, train.iloc[folds[k][0]], train.iloc[folds[k][1]], kept[k], settings, label, seed
        )
        for name, resampler, k in tasks
    )
    rows, held = [], []
    for (name, resampler, k), (scores, probability) in zip(tasks, results):
        fit, out = folds[k]
        where = {
            "classifier": name,
            "resampler": resampler,
            "repeat": k // settings.cv_folds,
            "fold": k % settings.cv_folds,
        }
        held_out = train.iloc[out]
        rows.append(
            {
                **where,
                **scores,
                "n_train_lesions": len(fit),
                "n_test_lesions": len(out),
                "n_train_patients": train.iloc[fit]["patient_id"].nunique(),
                "n_test_patients": held_out["patient_id"].nunique(),
            }
        )
        held.append(held_out[ID_COLUMNS].assign(**where, probability=probability))
    return NestedCV(pd.DataFrame(rows), pd.concat(held, ignore_index=True))


def _fit_one(
    name: str,
    resampler: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    features: list[str],
    held_out: pd.DataFrame,
    settings: ModelSettings,
    label: LabelSettings,
    seed: int,
    spec: ArmSpec,
) -> tuple[FittedModel, pd.DataFrame, float]:
    """Tune on all training patients, Platt-scale on the nested out-of-fold probabilities, score the
    test patients.

    Platt learns from every repeat's held-out probability as it is (one row per lesion and repeat):
    a test probability comes from one model, not from an average over repeats, which would be
    smoother and teach a steeper, overconfident slope. The stored out-of-fold probability of a
    lesion is the mean of its calibrated repeats."""
    x, y, groups = train[features], labels(train, label), train["patient_id"].to_numpy()
    tuned = tune(classifier(name, settings.grids), resampler, x, y, groups, seed, settings.tuning_folds)
    held_y = pd.Series(y, index=train["lesion_id"]).loc[held_out["lesion_id"]].to_numpy()
    model = platt_scale(tuned.pipeline, held_out["probability"].to_numpy(), held_y)
    calibrated = held_out.assign(probability=model.calibrate(held_out["probability"].to_numpy()))
    out_of_fold = calibrated.groupby("lesion_id")["probability"].mean().reindex(train["lesion_id"]).to_numpy()
    card = {
        "arm": spec.arm,
        "model": spec.model or name,
        "classifier": name,
        "resampler": resampler,
        "features": features,
        "params": tuned.params,
        "seed": seed,
        "tuning_cv_auc": tuned.cv_auc,
        "calibration": model.describe(),
        "training_data_sha256": data_hash(x, y),
        "training_patients": int(len(set(groups))),
        "training_patient_ids": sorted(set(groups)),
        "training_lesions": int(len(x)),
        "feature_reference": feature_reference(x),
        "positive_class": label.positive,
    }
    identifier = model_id(f"{spec.model or name}_{resampler}", card)
    rows = pd.concat(
        [
            test[ID_COLUMNS].assign(evaluation="test", probability=model.predict_proba(test[features])[:, 1]),
            train[ID_COLUMNS].assign(evaluation="out_of_fold", probability=out_of_fold),
        ],
        ignore_index=True,
    )
    rows = rows.assign(model_id=identifier, arm=spec.arm, model=spec.model or name, resampler=resampler)
    return FittedModel(identifier, name, resampler, model, card), rows, tuned.cv_auc


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


def fitting_settings(settings: ModelSettings, train: pd.DataFrame) -> ModelSettings:
    """The study's folds, fewer where the training patients of a class are fewer."""
    return replace(
        settings,
        tuning_folds=usable_folds(train, settings.tuning_folds),
        cv_folds=usable_folds(train, settings.cv_folds),
    )


def fit_radiomics_arm(
    matrix: pd.DataFrame,
    split: pd.DataFrame,
    features: list[str],
    settings: ModelSettings,
    label: LabelSettings,
    seed: int,
    spec: ArmSpec = RADIOMICS,
) -> ArmResult:
    """Every classifier x resampler the study names: nested CV on the training patients, then tuned
    on all of them, Platt-scaled on the nested out-of-fold probabilities, and scored on the test
    patients with patient-bootstrap intervals."""
    train = matrix[matrix["patient_id"].isin(training_patients(split))].reset_index(drop=True)
    test = matrix[matrix["patient_id"].isin(test_patients(split))].reset_index(drop=True)
    settings = fitting_settings(settings, train)
    combos = list(product(settings.classifiers, settings.resamplers))
    parallel = Parallel(n_jobs=settings.workers)
    nested = nested_cv(train, combos, settings, label, seed, parallel, features if spec.fixed_features else None)
    fitted = parallel(
        delayed(_fit_one)(
            name,
            resampler,
            train,
            test,
            features,
            nested.held_out[(nested.held_out["classifier"] == name) & (nested.held_out["resampler"] == resampler)],
            settings,
            label,
            seed,
            spec,
        )
        for name, resampler in combos
    )
    ids = {(m.classifier, m.resampler): m.model_id for m, _, _ in fitted}

    def with_ids(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(model_id=[ids[pair] for pair in zip(frame["classifier"], frame["resampler"])])

    folds, held_out = with_ids(nested.folds), with_ids(nested.held_out)
    metric_rows = []
    for model, rows, tuning_cv_auc in fitted:
        tested = rows[rows["evaluation"] == "test"].assign(y_true=lambda f: labels(f, label))
        metric_rows.append(
            {
                "model_id": model.model_id,
                "arm": spec.arm,
                "model": model.card["model"],
                "resampler": model.resampler,
                **test_metrics(tested, settings.bootstrap_resamples, seed),
                **summarise_folds(folds[folds["model_id"] == model.model_id]),
                "tuning_cv_auc": tuning_cv_auc,
                "n_features": len(features),
                "params": str(model.card["params"]),
                "calibration": model.card["calibration"]["method"],
                "seed": seed,
                "training_data_sha256": model.card["training_data_sha256"],
            }
        )
    predictions = pd.concat([rows for _, rows, _ in fitted], ignore_index=True)
    predictions["predicted_label"] = predicted_labels(predictions["probability"], label)
    return ArmResult(
        models=[m for m, _, _ in fitted],
        predictions=predictions,
        metrics=pd.DataFrame(metric_rows),
        cv_folds=folds,
        cv_predictions=held_out,
    )
