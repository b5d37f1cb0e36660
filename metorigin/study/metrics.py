"""Per-class metrics with patient-bootstrap intervals, and a flag where an interval is degenerate.

A reviewer reads a diagnostic model by what it gets right in each class, not by accuracy on a test
set that is three-quarters one class: sensitivity and specificity of each class, PPV and NPV,
balanced accuracy, the Brier score and the calibration line (intercept and slope of the outcome on
the logit of the probability). Each at the lesion and the patient level (a patient scored by the
mean of its lesions' probabilities), at 0.5 and at a threshold chosen without the test patients,
each with a 95% interval: patient bootstrap for every metric but the calibration line, whose
interval is the logistic fit's own (Wald, clustered by patient at the lesion level). Eight test
patients that separate perfectly give the same value in every resample: that interval has zero
width and is flagged as degenerate instead of being printed as certainty.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.special import logit
from sklearn.metrics import roc_curve
from statsmodels.tools.sm_exceptions import PerfectSeparationError, PerfectSeparationWarning

from metorigin.core.study import LabelSettings
from metorigin.study.evaluation import CUTOFF, degenerate_flag, patient_draws, patient_scores, roc_auc

LEVELS = ("lesion", "patient")
EPSILON = 1e-6  # probabilities are clipped this far from 0 and 1 before their logit
CALIBRATION = ("calibration_intercept", "calibration_slope")


@dataclass(frozen=True)
class Threshold:
    """A cut-off on P(positive class) and how it was chosen (printed beside every number it makes)."""

    name: str
    value: float


FIXED = Threshold("0.5", CUTOFF)


def youden_threshold(y_true, probability, chosen_on: str) -> Threshold:
    """The cut-off that maximises sensitivity + specificity - 1 (Youden's J) on these predictions:
    training patients' out-of-fold predictions, or the validation patients', never the test's."""
    fpr, tpr, cuts = roc_curve(np.asarray(y_true, dtype=int), np.asarray(probability, dtype=float))
    finite = np.isfinite(cuts)
    return Threshold(f"youden ({chosen_on})", float(cuts[finite][np.argmax((tpr - fpr)[finite])]))


def calibration_line(y_true, probability, groups=None) -> dict[str, tuple[float, float, float]]:
    """Calibration intercept (in the large: logit(p) as offset, slope held at 1) and slope (logistic
    regression of the outcome on logit(p)), each (estimate, 95% low, 95% high); Wald intervals,
    clustered by `groups` when given. NaN where one class is absent or the fit fails (perfect
    separation, one distinct probability)."""
    y = np.asarray(y_true, dtype=float)
    nan = (float("nan"),) * 3
    if len(y) < 3 or y.min() == y.max():
        return dict.fromkeys(CALIBRATION, nan)
    z = logit(np.clip(np.asarray(probability, dtype=float), EPSILON, 1 - EPSILON))
    robust = {"cov_type": "cluster", "cov_kwds": {"groups": pd.factorize(groups)[0]}} if groups is not None else {}
    family = sm.families.Binomial()
    out = {}
    for name, design, offset, index in (
        ("calibration_intercept", np.ones((len(z), 1)), z, 0),
        ("calibration_slope", sm.add_constant(z, has_constant="add"), None, 1),
    ):
        try:
            with warnings.catch_warnings():  # statsmodels warns on separation; its estimates run off
                warnings.simplefilter("error", PerfectSeparationWarning)
                fit = sm.GLM(y, design, family=family, offset=offset).fit(**robust)
            low, high = fit.conf_int()[index]
            out[name] = (float(fit.params[index]), float(low), float(high))
        except (np.linalg.LinAlgError, ValueError, PerfectSeparationError, PerfectSeparationWarning):
            out[name] = nan
    return out


def at_threshold(y_true, probability, threshold: float, label: LabelSettings) -> dict[str, float]:
    """Sensitivity and specificity of each class, PPV and NPV, balanced accuracy, accuracy."""
    y = np.asarray(y_true, dtype=bool)
    called = np.asarray(probability, dtype=float) >= threshold

    def share(hits: np.ndarray, among: np.ndarray) -> float:
        return float(hits[among].mean()) if among.any() else float("nan")

    recall_positive, recall_negative = share(called, y), share(~called, ~y)
    return {
        f"sensitivity[{label.positive}]": recall_positive,
        f"specificity[{label.positive}]": recall_negative,
        f"sensitivity[{label.negative}]": recall_negative,
        f"specificity[{label.negative}]": recall_positive,
        f"ppv[{label.positive}]": share(y, called),
        f"npv[{label.positive}]": share(~y, ~called),
        "balanced_accuracy": (recall_positive + recall_negative) / 2,
        "accuracy": float((called == y).mean()),
    }


def _values(y, p, thresholds: list[Threshold], label: LabelSettings) -> dict[tuple[str, str], float]:
    """(threshold, metric) -> value; the threshold is '' for what does not depend on one."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    values = {("", "auc"): roc_auc(y, p), ("", "brier"): float(np.mean((p - y) ** 2))}
    for threshold in thresholds:
        values |= {(threshold.name, k): v for k, v in at_threshold(y, p, threshold.value, label).items()}
    return values


def metric_intervals(
    lesions: pd.DataFrame, thresholds: list[Threshold], label: LabelSettings, resamples: int, seed: int
) -> pd.DataFrame:
    """One row per level, threshold and metric of one model's test lesions (patient_id, y_true,
    probability): the estimate and its 95% interval, `flag` set where the interval is degenerate."""
    frame = lesions.reset_index(drop=True)
    patients = patient_scores(frame)
    arrays = {
        "lesion": (frame["y_true"].to_numpy(), frame["probability"].to_numpy()),
        "patient": (patients["y_true"].to_numpy(), patients["probability"].to_numpy()),
    }
    draws = defaultdict(list)
    for rows, chosen in patient_draws(frame, resamples, seed):
        for level, index in (("lesion", rows), ("patient", chosen)):
            y, p = arrays[level]
            for key, value in _values(y[index], p[index], thresholds, label).items():
                draws[(level, *key)].append(value)
    n_patients = len(patients)
    flag = degenerate_flag(n_patients)
    cut = {t.name: t.value for t in thresholds}
    out = []
    for level in LEVELS:
        y, p = arrays[level]
        for (threshold, metric), estimate in _values(y, p, thresholds, label).items():
            values = np.asarray(draws[(level, threshold, metric)], dtype=float)
            values = values[np.isfinite(values)]
            low, high = np.percentile(values, [2.5, 97.5]) if len(values) else (np.nan, np.nan)
            out.append((level, threshold, metric, estimate, low, high, len(values) > 0 and low == high))
        groups = frame["patient_id"] if level == "lesion" else None
        for metric, (estimate, low, high) in calibration_line(y, p, groups).items():
            out.append((level, "", metric, estimate, low, high, bool(np.isfinite(low)) and low == high))
    table = pd.DataFrame(out, columns=["level", "threshold", "metric", "estimate", "ci_low", "ci_high", "degenerate"])
    return table.assign(
        threshold=table["threshold"].replace("", None),
        threshold_value=table["threshold"].map(cut),
        n_patients=n_patients,
        n_lesions=len(frame),
        flag=np.where(table["degenerate"], flag, None),
    ).drop(columns="degenerate")


def every_model_intervals(
    predictions: pd.DataFrame,
    threshold_from: dict[str, tuple[str, str]],
    label: LabelSettings,
    resamples: int,
    seed: int,
) -> pd.DataFrame:
    """`metric_intervals` of every model of `predictions` (all arms' rows, with `y_true`) on its test
    lesions, at 0.5 and at the Youden cut-off of the rows its arm chooses thresholds on
    (`threshold_from`: arm -> (evaluation, in words); never the test rows), where those hold both classes."""
    tables = []
    for _, rows in predictions.groupby("model_id", sort=True):
        first = rows.iloc[0]
        evaluation, chosen_on = threshold_from[first["arm"]]
        fit = rows[rows["evaluation"] == evaluation]
        thresholds = [FIXED]
        if fit["y_true"].nunique() == 2:
            thresholds.append(youden_threshold(fit["y_true"], fit["probability"], chosen_on))
        table = metric_intervals(rows[rows["evaluation"] == "test"], thresholds, label, resamples, seed)
        tables.append(table.assign(**first[["model_id", "arm", "model", "resampler"]].to_dict()))
    return pd.concat(tables, ignore_index=True)
