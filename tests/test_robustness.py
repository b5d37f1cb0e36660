"""The permutation null and the split repeats (metorigin/study/robustness.py) on synthetic matrices: chance
looks like chance, a planted signal gets the smallest p-value the permutations allow, and every
split holds out whole patients."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metorigin.core.study import LabelSettings, ModelSettings, SplitSettings
from metorigin.study.robustness import (
    permutation_null,
    permuted_labels,
    robustness_rounds,
    round_aucs,
    split_repeat_aucs,
    split_spread,
)
from metorigin.study.split import split_patients
from metorigin.study.split import test_patients as held_out_patients
from metorigin.study.tables import permutation_summary

from .helpers import noise_matrix

LABEL, SPLIT = LabelSettings(), SplitSettings()
# Two pipelines, so the statistic is a maximum over models as in the study; quick ones.
SETTINGS = ModelSettings(
    classifiers=("logistic_regression", "naive_bayes"), resamplers=("undersampling",), tuning_folds=2, workers=1
)
PERMUTATIONS = 9  # the smallest p-value they allow: 1 / 10


def _robustness(signal: float, split_repeats: int = 1, data_seed: int = 3) -> tuple[list, pd.DataFrame, pd.DataFrame]:
    matrix = noise_matrix(patients=24, lesions=3, features=20, seed=data_seed, signal=signal)
    split = split_patients(matrix[["patient_id", "label"]].drop_duplicates(), SPLIT, seed=0)
    rounds = robustness_rounds(matrix, split, SPLIT, PERMUTATIONS, split_repeats, seed=0)
    return rounds, round_aucs(rounds, SETTINGS, LABEL, seed=0), split


@pytest.fixture(scope="module")
def planted() -> tuple[list, pd.DataFrame, pd.DataFrame]:
    """A strong signal in one feature, the study's split and two more."""
    return _robustness(signal=2.5, split_repeats=3)


def test_permutation_p_value_is_not_small_for_noise_and_smallest_possible_for_a_planted_signal(planted):
    # Under the null a p-value is uniform: one noise matrix reaches the floor one time in ten, so
    # three of them are asked for what noise gives on average, not for a large p every time.
    p_values = []
    for data_seed in (3, 4, 5):
        null = permutation_null(_robustness(signal=0.0, data_seed=data_seed)[1])
        assert list(null["labels"]) == ["observed"] + ["permuted"] * PERMUTATIONS
        p_values.append(null["p_value"].iloc[0])
    assert np.mean(p_values) >= 0.3 and sum(p == 1 / (PERMUTATIONS + 1) for p in p_values) <= 1

    _, aucs, _ = planted
    null = permutation_null(aucs)
    observed = null[null["labels"] == "observed"].iloc[0]
    assert observed["max_auc"] > 0.9
    assert (null.loc[null["labels"] == "permuted", "max_auc"] < observed["max_auc"]).all()
    assert observed["p_value"] == 1 / (PERMUTATIONS + 1)
    # The maximum is over every pipeline: the row names the one that reached it.
    best = aucs[aucs["kind"] == "observed"].sort_values("auc").iloc[-1]
    assert (observed["classifier"], observed["max_auc"]) == (best["classifier"], best["auc"])


def test_permuted_labels_move_between_patients_and_keep_the_class_counts(planted):
    rounds, _, _ = planted
    observed, permuted = rounds[0], rounds[1]
    assert permuted.train["patient_id"].tolist() == observed.train["patient_id"].tolist()
    assert permuted.test.equals(observed.test)  # the test patients keep their real labels
    per_patient = permuted.train.groupby("patient_id")["label"].nunique()
    assert (per_patient == 1).all()  # a patient's lesions share the one permuted label
    assert _class_counts(permuted).equals(_class_counts(observed))
    assert not permuted_labels(observed.train, np.random.default_rng(1))["label"].equals(observed.train["label"])
    assert all(not r.train["label"].equals(observed.train["label"]) for r in rounds[1 : PERMUTATIONS + 1])


def _class_counts(r) -> pd.Series:
    return r.train.drop_duplicates("patient_id")["label"].value_counts().sort_index()


def test_split_repeats_hold_out_other_whole_patients_and_summarise_the_spread(planted):
    rounds, aucs, split = planted
    splits = [r for r in rounds if r.kind in ("observed", "split")]
    held_out = [frozenset(r.test["patient_id"]) for r in splits]
    assert held_out[0] == frozenset(held_out_patients(split)) and len(set(held_out)) == 3
    assert all(not set(r.train["patient_id"]) & set(r.test["patient_id"]) for r in splits)
    repeats = split_repeat_aucs(aucs)
    assert sorted(repeats["repeat"].unique()) == [0, 1, 2] and len(repeats) == 3 * SETTINGS.n_pipelines
    spread = split_spread(repeats)
    assert (spread["n_splits"] == 3).all()
    assert (spread["auc_p2_5"] <= spread["median_auc"]).all() and (spread["median_auc"] <= spread["auc_p97_5"]).all()
    study = repeats[repeats["repeat"] == 0].set_index("classifier")["auc"]
    assert spread.set_index("classifier")["study_split_auc"].equals(study.rename("study_split_auc"))


def test_a_permuted_round_that_cannot_fit_counts_against_the_observed_auc():
    def rows(kind: str, index: int, aucs: tuple) -> list[dict]:
        return [
            {"kind": kind, "index": index, "classifier": c, "resampler": "smote", "auc": a} for c, a in zip("ab", aucs)
        ]

    aucs = pd.DataFrame(
        rows("observed", 0, (0.9, 0.8)) + rows("permuted", 1, (0.5, 0.6)) + rows("permuted", 2, (np.nan,) * 2)
    )
    null = permutation_null(aucs).set_index("permutation")
    assert null.loc[0, "max_auc"] == 0.9 and null.loc[1, "classifier"] == "b" and pd.isna(null.loc[2, "max_auc"])
    assert list(null["n_failed"]) == [0, 0, 2]
    assert null["p_value"].iloc[0] == 2 / 3  # the unfitted round counts as reaching 0.9
    assert "1 permuted round(s) where no pipeline could fit" in permutation_summary(null.reset_index())
    # No permutation asked for: no p-value, and the summary says so.
    alone = permutation_null(aucs[aucs["kind"] == "observed"])
    assert pd.isna(alone["p_value"].iloc[0]) and "no permutation run" in permutation_summary(alone)
