"""Is a model better or worse than the best one, or is the difference what eight test patients allow?

Every model's test AUC is compared with the AUC of the model chosen by cross-validation on the
training patients (never by the test patients), on the lesions both scored: a paired patient
bootstrap (each resample draws patients within their class and scores both models on the same
draw) gives the difference with its 95% interval and a two-sided bootstrap p-value; the p-values
of a level are then corrected for the number of comparisons (Holm). Patient-level AUCs (each
patient's mean probability) are compared the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from metorigin.study.evaluation import degenerate_flag, patient_draws, roc_auc


def _levels(best: pd.DataFrame, other: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, tuple]]:
    """The lesions both models scored, and per level the arrays (y, p_other, p_best)."""
    paired = (
        best[["lesion_id", "patient_id", "y_true", "probability"]]
        .merge(other[["lesion_id", "probability"]], on="lesion_id", suffixes=("_best", "_other"))
        .reset_index(drop=True)
    )
    patients = paired.groupby("patient_id", sort=True)[["y_true", "probability_other", "probability_best"]].agg(
        {"y_true": "first", "probability_other": "mean", "probability_best": "mean"}
    )
    columns = ["y_true", "probability_other", "probability_best"]
    return paired, {
        "lesion": tuple(paired[c].to_numpy() for c in columns),
        "patient": tuple(patients[c].to_numpy() for c in columns),
    }


def _difference(y, other, best) -> float:
    return roc_auc(y, other) - roc_auc(y, best)


def compare_with_best(test: pd.DataFrame, best_id: str, resamples: int, seed: int) -> pd.DataFrame:
    """One row per other model and level: its AUC, the best model's, the difference with its paired
    patient-bootstrap 95% interval (`flag`ged where it has zero width), the bootstrap p-value and the
    Holm-corrected one.

    `test`: every model's test lesions (model_id, lesion_id, patient_id, y_true, probability)."""
    best = test[test["model_id"] == best_id]
    rows = []
    for model_id, other in test[test["model_id"] != best_id].groupby("model_id", sort=True):
        paired, arrays = _levels(best, other)
        draws = {"lesion": [], "patient": []}
        for lesions, patients in patient_draws(paired, resamples, seed):
            for level, index in (("lesion", lesions), ("patient", patients)):
                draws[level].append(_difference(*(a[index] for a in arrays[level])))
        for level, (y, p_other, p_best) in arrays.items():
            differences = np.asarray(draws[level])
            differences = differences[np.isfinite(differences)]
            low, high = np.percentile(differences, [2.5, 97.5])
            tail = min((differences <= 0).sum(), (differences >= 0).sum())
            rows.append(
                {
                    "model_id": model_id,
                    "best_model_id": best_id,
                    "level": level,
                    "auc": roc_auc(y, p_other),
                    "best_auc": roc_auc(y, p_best),
                    "difference": _difference(y, p_other, p_best),
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "p_value": min(1.0, 2 * (1 + tail) / (1 + len(differences))),
                    "n_patients": int(paired["patient_id"].nunique()),
                    "n_lesions": len(paired),
                    # Both models separate the test patients perfectly in every resample, say.
                    "flag": degenerate_flag(paired["patient_id"].nunique()) if low == high else None,
                }
            )
    table = pd.DataFrame(rows)
    if not table.empty:
        table["p_holm"] = table.groupby("level")["p_value"].transform(lambda p: multipletests(p, method="holm")[1])
    return table
