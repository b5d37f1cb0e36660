"""Feature selection, fitted on training patients only: redundancy filter, then importance ranking.

The study drops features at |Pearson r| > 0.6 and ranks the survivors by Random Forest permutation
importance (its Table 2); the classifiers then learn from the survivors. Both steps see only the
training patients, so nothing about the test patients shapes which features the models get.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.inspection import permutation_importance
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline


@dataclass(frozen=True)
class Redundancy:
    kept: list[str]
    dropped: dict[str, tuple[str, float]]  # dropped feature -> (kept feature it duplicates, r)
    constant: list[str]  # no variance on the training patients: no information


def drop_correlated(features: pd.DataFrame, max_abs_r: float) -> Redundancy:
    """Greedy and deterministic: walk the features in the matrix's column order (pyradiomics' own:
    shape, first order, then the texture classes) and keep a feature unless it correlates beyond
    `max_abs_r` with one already kept; it is then recorded against the kept feature it correlates
    with most. Constant columns are dropped first. Correlations are pairwise-complete (NaN-tolerant).
    """
    spread = features.std(skipna=True)
    constant = [c for c in features.columns if not np.isfinite(spread[c]) or spread[c] == 0]
    candidates = [c for c in features.columns if c not in constant]
    r = features[candidates].corr(method="pearson").abs().fillna(0.0)
    kept: list[str] = []
    dropped: dict[str, tuple[str, float]] = {}
    for name in candidates:
        if kept:
            against = r.loc[name, kept]
            strongest = against.idxmax()
            if against[strongest] > max_abs_r:
                dropped[name] = (strongest, float(r.loc[name, strongest]))
                continue
        kept.append(name)
    return Redundancy(kept=kept, dropped=dropped, constant=constant)


def permutation_ranking(
    x: pd.DataFrame, y: np.ndarray, groups: np.ndarray, seed: int, repeats: int, folds: int, n_jobs: int = 1
) -> pd.DataFrame:
    """Mean drop in ROC AUC when a feature is shuffled, measured on held-out training patients.

    Measured out of fold (grouped by patient) rather than on the data the forest memorised, where
    every feature looks useful; the mean over folds and repeats ranks the features.
    """
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    per_fold = []
    for fold, (fit_rows, held_out) in enumerate(splitter.split(x, y, groups)):
        forest = make_pipeline(
            SimpleImputer(strategy="median"),
            RandomForestClassifier(n_estimators=200, random_state=seed + fold, n_jobs=n_jobs),
        )
        forest.fit(x.iloc[fit_rows], y[fit_rows])
        result = permutation_importance(
            forest,
            x.iloc[held_out],
            y[held_out],
            scoring="roc_auc",
            n_repeats=repeats,
            random_state=seed + fold,
            n_jobs=n_jobs,
        )
        per_fold.append(result.importances)
    importances = np.concatenate(per_fold, axis=1)
    table = pd.DataFrame(
        {
            "feature_name": x.columns,
            "importance": importances.mean(axis=1),
            "importance_sd": importances.std(axis=1, ddof=1),
        }
    )
    table = table.sort_values(["importance", "feature_name"], ascending=[False, True], kind="stable")
    return table.assign(rank=np.arange(1, len(table) + 1)).reset_index(drop=True)


def feature_importance_table(redundancy: Redundancy, ranking: pd.DataFrame) -> pd.DataFrame:
    """Table 2 and its audit trail: every feature, ranked when kept, else why it was dropped."""
    dropped = pd.DataFrame(
        [
            {
                "feature_name": name,
                "kept": False,
                "redundant_with": kept,
                "abs_r": r,
                "drop_reason": f"|r| = {r:.3f} with {kept}",
            }
            for name, (kept, r) in redundancy.dropped.items()
        ]
        + [
            {
                "feature_name": name,
                "kept": False,
                "redundant_with": None,
                "abs_r": None,
                "drop_reason": "constant on the training patients",
            }
            for name in redundancy.constant
        ]
    )
    kept = ranking.assign(kept=True, redundant_with=None, abs_r=None, drop_reason=None)
    columns = ["rank", "feature_name", "importance", "importance_sd", "kept", "redundant_with", "abs_r", "drop_reason"]
    table = pd.concat([kept, dropped], ignore_index=True).reindex(columns=columns)
    return table.astype({"rank": "Int64", "kept": bool})
