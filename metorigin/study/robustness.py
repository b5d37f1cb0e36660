"""How much of the radiomics arm's Table 3 chance could explain: a label-permutation null and
other test splits.

Both repeat the same round: redundancy filter, tuning (grouped inner CV) and fit of every
classifier x resampler on the training patients, then the test lesions' AUC of each. A round is a
tuned fit without the nested CV: the test AUC is what both questions are about, and the observed
round on the study's own split is computed the same way, so the observed statistic and its null
are alike in every step. The Platt scaling Table 3 adds is left out: it is fitted on the nested CV
this round skips. Its line is monotone, so the AUC is Table 3's wherever its slope is positive (and
its clip does not tie scores); a pipeline whose out-of-fold AUC is below 0.5 gets a negative slope,
and there Table 3's AUC is one minus this one.

- Permutation null: the training patients' labels are shuffled between patients (a patient's
  lesions keep one label; the class counts stay), everything is refitted, and the test patients
  (real labels) are scored. The statistic is the best AUC over all pipelines, so the p-value
  accounts for having chosen the best of sixteen: p = (1 + #null >= observed) / (1 + permutations).
- Split repeats: the same round on other seeded test splits of the cohort, so one split's test AUC
  can be read against the spread of test AUCs that other draws of 8 test patients give.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from metorigin.core.study import LabelSettings, ModelSettings, SplitSettings
from metorigin.study.classifiers import classifier, tune
from metorigin.study.evaluation import labels, roc_auc
from metorigin.study.radiomics_arm import feature_columns, fitting_settings
from metorigin.study.selection import drop_correlated
from metorigin.study.split import split_patients, test_patients, training_patients

OBSERVED, PERMUTED, SPLIT = "observed", "permuted", "split"


@dataclass(frozen=True)
class Round:
    """One refit of the arm: which training and test lesions, with which training labels."""

    kind: str  # OBSERVED, PERMUTED or SPLIT
    index: int  # the permutation or split repeat (0: the study's split, real labels)
    train: pd.DataFrame
    test: pd.DataFrame


def _test_auc(
    name: str, resampler: str, features: list[str], r: Round, settings: ModelSettings, label, seed: int
) -> float:
    """One pipeline tuned and fitted on the round's training lesions; the AUC of its test scores.

    NaN where the pipeline cannot fit this round's lesions: a permutation keeps the patients per
    class, not the lesions, so a small cohort's permuted round can leave SMOTE or kNN too few
    neighbours where the real labels did not (`permutation_null` counts such a round against the
    observed AUC, never for it)."""
    groups = r.train["patient_id"].to_numpy()
    spec = classifier(name, settings.grids)
    try:
        tuned = tune(spec, resampler, r.train[features], labels(r.train, label), groups, seed, settings.tuning_folds)
    except ValueError:
        return float("nan")
    return roc_auc(labels(r.test, label), tuned.pipeline.predict_proba(r.test[features])[:, 1])


def round_aucs(rounds: list[Round], settings: ModelSettings, label: LabelSettings, seed: int) -> pd.DataFrame:
    """Every round x pipeline's test AUC, one row each, from one pool of workers: the rounds are
    independent, and one pool balances their uneven pipelines across the workers to the end."""
    combos = list(product(settings.classifiers, settings.resamplers))
    # The redundancy filter reads no labels: refitted per split, shared by the permuted rounds.
    filtered = {}
    for r in rounds:
        if r.kind != PERMUTED:
            filtered[r.kind, r.index] = drop_correlated(r.train[feature_columns(r.train)], settings.max_abs_correlation)
    kept = [filtered[(OBSERVED, 0) if r.kind == PERMUTED else (r.kind, r.index)].kept for r in rounds]
    fitting = [fitting_settings(settings, r.train) for r in rounds]
    tasks = [(i, name, resampler) for i in range(len(rounds)) for name, resampler in combos]
    aucs = Parallel(n_jobs=settings.workers)(
        delayed(_test_auc)(name, resampler, kept[i], rounds[i], fitting[i], label, seed) for i, name, resampler in tasks
    )
    sizes = [(r.test["patient_id"].nunique(), len(r.test)) for r in rounds]
    return pd.DataFrame(
        [
            {
                "kind": rounds[i].kind,
                "index": rounds[i].index,
                "classifier": name,
                "resampler": resampler,
                "auc": auc,
                "n_test_patients": sizes[i][0],
                "n_test_lesions": sizes[i][1],
            }
            for (i, name, resampler), auc in zip(tasks, aucs)
        ]
    )


def permuted_labels(train: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The training lesions with their patients' labels shuffled between patients."""
    per_patient = train.groupby("patient_id", sort=True)["label"].first()
    shuffled = pd.Series(rng.permutation(per_patient.to_numpy()), index=per_patient.index)
    return train.assign(label=train["patient_id"].map(shuffled))


def robustness_rounds(
    matrix: pd.DataFrame,
    split: pd.DataFrame,
    split_settings: SplitSettings,
    permutations: int,
    split_repeats: int,
    seed: int,
) -> list[Round]:
    """The observed round (the study's split), `permutations` permuted rounds, and the other
    `split_repeats - 1` splits (seed + repeat; the same draw as the study's split would make)."""
    train = matrix[matrix["patient_id"].isin(training_patients(split))]
    test = matrix[matrix["patient_id"].isin(test_patients(split))]
    rng = np.random.default_rng(seed)
    rounds = [Round(OBSERVED, 0, train, test)]
    rounds += [Round(PERMUTED, k, permuted_labels(train, rng), test) for k in range(1, permutations + 1)]
    patients = matrix[["patient_id", "label"]].drop_duplicates("patient_id")
    for repeat in range(1, split_repeats):
        other = split_patients(patients, split_settings, seed + repeat)
        rounds.append(
            Round(
                SPLIT,
                repeat,
                matrix[matrix["patient_id"].isin(training_patients(other))],
                matrix[matrix["patient_id"].isin(test_patients(other))],
            )
        )
    return rounds


def permutation_null(aucs: pd.DataFrame) -> pd.DataFrame:
    """One row per round of the null and one for the observed labels: the best AUC over the
    pipelines, which pipeline gave it, how many could not fit, and (on every row) the test's p-value:
    (1 + permuted maxima at or above the observed one) / (1 + permutations), never 0; its smallest
    possible value says how many permutations were run. A permuted round where no pipeline could
    fit counts as at or above the observed maximum: a failure never makes the p-value smaller."""
    rounds = aucs[aucs["kind"].isin([OBSERVED, PERMUTED])]
    fitted = rounds.dropna(subset=["auc"])
    best = fitted.loc[fitted.groupby(["kind", "index"])["auc"].idxmax()].set_index(["kind", "index"])
    every = rounds.groupby(["kind", "index"])["auc"].agg(n_failed=lambda a: int(a.isna().sum()))
    null = (
        every.join(best[["auc", "classifier", "resampler"]])
        .reset_index()
        .rename(columns={"index": "permutation", "auc": "max_auc", "kind": "labels"})
        .sort_values("permutation")
        .reset_index(drop=True)[["permutation", "labels", "max_auc", "classifier", "resampler", "n_failed"]]
    )
    observed = null.loc[null["labels"] == OBSERVED, "max_auc"].iloc[0]
    permuted = null.loc[null["labels"] == PERMUTED, "max_auc"]
    at_or_above = (permuted >= observed) | permuted.isna()
    p_value = (1 + at_or_above.sum()) / (1 + len(permuted)) if len(permuted) else np.nan
    return null.assign(p_value=float(p_value))


def split_repeat_aucs(aucs: pd.DataFrame) -> pd.DataFrame:
    """Every pipeline's test AUC on each split (repeat 0: the study's)."""
    rows = aucs[aucs["kind"].isin([OBSERVED, SPLIT])]
    return rows.rename(columns={"index": "repeat"}).drop(columns="kind").reset_index(drop=True)


def split_spread(repeats: pd.DataFrame) -> pd.DataFrame:
    """Per pipeline: the study's split's AUC beside the median and 2.5-97.5 percentiles over splits."""
    grouped = repeats.groupby(["classifier", "resampler"])["auc"]
    study_split = repeats[repeats["repeat"] == 0].set_index(["classifier", "resampler"])["auc"]
    return pd.DataFrame(
        {
            "study_split_auc": study_split,
            "median_auc": grouped.median(),
            "auc_p2_5": grouped.quantile(0.025),
            "auc_p97_5": grouped.quantile(0.975),
            "n_splits": grouped.count(),
        }
    ).reset_index()
