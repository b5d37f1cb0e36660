"""How good a model is, said honestly: lesion and patient AUC with patient-level bootstrap intervals.

Eight test patients carry perhaps a hundred lesions, but the lesions of one patient are not
independent draws: resampling lesions would give intervals that are far too narrow. So the
bootstrap resamples patients (within each class, so both classes are always present) and takes
all lesions of each drawn patient.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from scipy.stats import t as student_t

from metorigin.core.study import LabelSettings

CUTOFF = 0.5  # probability columns are P(the study's positive class); AUC does not depend on the choice


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted half; NaN when one class is absent."""
    y_true = np.asarray(y_true, dtype=bool)
    n_pos = int(y_true.sum())
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def accuracy(y_true: np.ndarray, score: np.ndarray, cutoff: float = CUTOFF) -> float:
    return float(np.mean((np.asarray(score) >= cutoff) == np.asarray(y_true, dtype=bool)))


def labels(frame: pd.DataFrame, label: LabelSettings) -> np.ndarray:
    """The class column as the 0/1 target: 1 for the study's positive class."""
    return (frame["label"] == label.positive).to_numpy(dtype=int)


def predicted_labels(probability: np.ndarray, label: LabelSettings, cutoff: float = CUTOFF) -> np.ndarray:
    return np.where(np.asarray(probability) >= cutoff, label.positive, label.negative)


def patient_scores(predictions: pd.DataFrame) -> pd.DataFrame:
    """The patient-level diagnosis: the mean of the patient's lesion probabilities."""
    return (
        predictions.groupby("patient_id", sort=True)
        .agg(y_true=("y_true", "first"), probability=("probability", "mean"))
        .reset_index()
    )


def point_estimates(predictions: pd.DataFrame) -> dict[str, float]:
    patients = patient_scores(predictions)
    y, p = predictions["y_true"].to_numpy(), predictions["probability"].to_numpy()
    return {
        "auc": roc_auc(y, p),
        "accuracy": accuracy(y, p),
        "patient_auc": roc_auc(patients["y_true"], patients["probability"]),
        "patient_accuracy": accuracy(patients["y_true"], patients["probability"]),
    }


def patient_draws(frame: pd.DataFrame, resamples: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Patient bootstrap draws of one model's lesions (`frame`: patient_id, y_true; index 0..n-1):
    each resample draws patients with replacement within their class (so both classes are always
    present) and takes all lesions of each drawn patient. Yields the rows of `frame` and the drawn
    patients as positions in the patient order of `patient_scores` (sorted ids)."""
    rows_of = frame.groupby("patient_id", sort=True).indices
    patient_ids = np.array(sorted(rows_of))
    patient_y = frame.groupby("patient_id", sort=True)["y_true"].first().to_numpy()
    by_class = [np.flatnonzero(patient_y == c) for c in (0, 1)]
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        chosen = np.concatenate(
            [rng.choice(members, size=len(members), replace=True) for members in by_class if len(members)]
        )
        yield np.concatenate([rows_of[pid] for pid in patient_ids[chosen]]), chosen


def bootstrap_intervals(predictions: pd.DataFrame, resamples: int, seed: int, level: float = 0.95) -> dict[str, float]:
    """Percentile intervals of lesion AUC, lesion accuracy and patient AUC over patient resamples.

    `predictions` holds one model's test lesions: patient_id, y_true, probability.
    """
    frame = predictions.reset_index(drop=True)
    y, p = frame["y_true"].to_numpy(dtype=bool), frame["probability"].to_numpy(dtype=float)
    patients = patient_scores(frame)
    patient_y, patient_p = patients["y_true"].to_numpy(dtype=bool), patients["probability"].to_numpy()
    draws = {"auc": [], "accuracy": [], "patient_auc": []}
    for rows, chosen in patient_draws(frame, resamples, seed):
        draws["auc"].append(roc_auc(y[rows], p[rows]))
        draws["accuracy"].append(accuracy(y[rows], p[rows]))
        draws["patient_auc"].append(roc_auc(patient_y[chosen], patient_p[chosen]))
    tail = (1 - level) / 2 * 100
    out = {}
    for name, values in draws.items():
        values = np.asarray(values)
        values = values[np.isfinite(values)]
        low, high = np.percentile(values, [tail, 100 - tail]) if len(values) else (np.nan, np.nan)
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = float(low), float(high)
    return out


def one_models_rows(
    scored: pd.DataFrame, identity: dict, label: LabelSettings, settings_hash: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One model's per-lesion probabilities with its identity (`model_id`, `arm`, `model`,
    `resampler`), its calls at 0.5 and its settings hash; and its test rows with `y_true`, what
    `test_metrics` takes."""
    predictions = scored.assign(
        **identity,
        predicted_label=lambda f: predicted_labels(f["probability"], label),
        settings_hash=settings_hash,
    )
    return predictions, predictions[predictions["evaluation"] == "test"].assign(y_true=lambda f: labels(f, label))


def test_metrics(tested: pd.DataFrame, resamples: int, seed: int) -> dict[str, float]:
    """The Table 3 columns every arm shares, from one model's test lesions (patient_id, y_true, probability)."""
    return {
        "n_test_patients": int(tested["patient_id"].nunique()),
        "n_test_lesions": int(len(tested)),
        **point_estimates(tested),
        **bootstrap_intervals(tested, resamples, seed),
    }


def corrected_interval(
    scores, n_train: float, n_test: float, level: float = 0.95, bounds: tuple[float, float] = (0.0, 1.0)
) -> tuple[float, float]:
    """Nadeau and Bengio's corrected resampled t interval for the mean of repeated-CV scores: folds
    share training patients, so their spread understates the uncertainty of the mean; the variance
    is taken as (1/k + n_test/n_train) times the folds' variance, on k - 1 degrees of freedom.
    Clipped to the metric's `bounds`: with few folds the t quantile is large (12.7 for two folds)
    and the interval would run past them, to AUCs no model can have."""
    scores = np.asarray(scores, dtype=float)
    scores = scores[np.isfinite(scores)]
    if len(scores) < 2:
        return float("nan"), float("nan")
    half = student_t.ppf((1 + level) / 2, len(scores) - 1) * np.sqrt(
        (1 / len(scores) + n_test / n_train) * scores.var(ddof=1)
    )
    low, high = np.clip([scores.mean() - half, scores.mean() + half], *bounds)  # NaN stays NaN
    return float(low), float(high)


def summarise_folds(fold_scores: pd.DataFrame) -> dict[str, float]:
    """Nested repeated cross-validation: mean, spread and corrected interval of the per-fold lesion
    AUC, and the mean and spread of the per-fold accuracy."""
    low, high = corrected_interval(
        fold_scores["auc"], fold_scores["n_train_lesions"].mean(), fold_scores["n_test_lesions"].mean()
    )
    return {
        "cv_auc": float(fold_scores["auc"].mean()),
        "cv_auc_sd": float(fold_scores["auc"].std(ddof=1)),
        "cv_auc_ci_low": low,
        "cv_auc_ci_high": high,
        "cv_accuracy": float(fold_scores["accuracy"].mean()),
        "cv_accuracy_sd": float(fold_scores["accuracy"].std(ddof=1)),
        "cv_folds": int(len(fold_scores)),
    }


def degenerate_flag(n_patients: int) -> str:
    """The flag of an interval of zero width: every bootstrap resample of so few test patients gave
    the same value, which says the data cannot show the uncertainty, not that there is none."""
    return f"degenerate (n test patients = {n_patients})"
