"""The study's model-building parts on small constructed data: split, selection, metrics, registry."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from metorigin.core.study import SplitSettings
from metorigin.study.evaluation import bootstrap_intervals, point_estimates, roc_auc
from metorigin.study.registry import data_hash, model_id, save_model
from metorigin.study.selection import drop_correlated, feature_importance_table, permutation_ranking
from metorigin.study.split import TEST, TRAIN, VALIDATION, extend_split, holds_out_every_class, split_patients


def _patients(n_colorectal: int, n_pancreatic: int) -> pd.DataFrame:
    labels = ["colorectal"] * n_colorectal + ["pancreatic"] * n_pancreatic
    return pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(len(labels))], "label": labels})


def test_split_on_the_study_cohort_is_4_per_class_test_and_5_validation():
    split = split_patients(_patients(47, 31), SplitSettings(), seed=1)
    counts = split.groupby(["set", "label"]).size()
    assert counts[(TEST, "colorectal")] == 4 and counts[(TEST, "pancreatic")] == 4
    assert (split["set"] == VALIDATION).sum() == 5
    assert split.groupby("set").size()[TRAIN] == 78 - 8 - 5  # the study's 68/5/8 less its 3 extra patients
    assert set(split.loc[split["set"] == VALIDATION, "label"]) == {"colorectal", "pancreatic"}
    assert split["patient_id"].is_unique


def test_split_is_fixed_by_the_seed_and_small_classes_keep_half_for_training():
    a, b = (split_patients(_patients(47, 31), SplitSettings(), seed=1) for _ in range(2))
    pd.testing.assert_frame_equal(a, b)
    other = split_patients(_patients(47, 31), SplitSettings(), seed=2)
    assert set(other.loc[other["set"] == TEST, "patient_id"]) != set(a.loc[a["set"] == TEST, "patient_id"])
    small = split_patients(_patients(5, 3), SplitSettings(), seed=1)
    assert small.groupby("label")["set"].apply(lambda s: (s == TEST).sum()).to_dict() == {
        "colorectal": 2,
        "pancreatic": 1,
    }


def test_redundancy_filter_keeps_the_first_of_each_correlated_group_and_says_why():
    rng = np.random.default_rng(0)
    a, c = rng.normal(size=200), rng.normal(size=200)
    frame = pd.DataFrame(
        {
            "a": a,
            "b": 2 * a + rng.normal(scale=0.1, size=200),
            "c": c,
            "d": np.full(200, 3.0),
            "e": -c + rng.normal(scale=0.1, size=200),
        }
    )
    result = drop_correlated(frame, max_abs_r=0.6)
    assert result.kept == ["a", "c"]
    assert result.constant == ["d"]
    assert result.dropped["b"][0] == "a" and result.dropped["e"][0] == "c"
    assert result.dropped["b"][1] > 0.99
    # The rule walks the columns in order: with b first, b is the one kept.
    assert drop_correlated(frame[["b", "a"]], 0.6).kept == ["b"]


def test_permutation_ranking_puts_the_informative_feature_first_and_table_records_every_feature():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(30), 5)
    y = np.repeat(np.arange(30) % 2, 5)
    x = pd.DataFrame({"signal": y + rng.normal(scale=0.5, size=150), "noise": rng.normal(size=150)})
    ranking = permutation_ranking(x, y, groups, seed=0, repeats=3, folds=3)
    assert ranking["feature_name"].tolist() == ["signal", "noise"]
    assert ranking.loc[0, "importance"] > 0.1
    table = feature_importance_table(drop_correlated(x.assign(copy=x["signal"] * 3), 0.6), ranking)
    assert table.loc[table["feature_name"] == "copy", "redundant_with"].item() == "signal"
    assert table["rank"].dropna().tolist() == [1, 2]


def test_auc_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=300)
    score = np.round(rng.random(300) + 0.3 * y, 1)  # rounding makes ties
    assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert np.isnan(roc_auc(np.ones(5), np.arange(5)))


def _predictions(per_patient: list[tuple[int, list[float]]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"patient_id": f"P{i}", "y_true": y, "probability": p} for i, (y, ps) in enumerate(per_patient) for p in ps]
    )


def test_bootstrap_resamples_patients_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    patients = [(y, list(np.clip(rng.normal(0.4 + 0.2 * y, 0.15, size=rng.integers(2, 15)), 0, 1))) for y in [0, 1] * 6]
    predictions = _predictions(patients)
    point = point_estimates(predictions)
    ci = bootstrap_intervals(predictions, resamples=1000, seed=0)
    assert ci["auc_ci_low"] <= point["auc"] <= ci["auc_ci_high"]
    assert ci["auc_ci_high"] - ci["auc_ci_low"] > 0.05
    assert bootstrap_intervals(predictions, 1000, seed=0) == ci
    # Perfectly separated patients: every patient resample separates too, the interval is [1, 1].
    separated = _predictions([(0, [0.1, 0.2]), (0, [0.3]), (1, [0.8, 0.9, 0.7]), (1, [0.6])])
    assert bootstrap_intervals(separated, 200, seed=0)["auc_ci_low"] == 1.0


def test_bootstrap_interval_is_wider_than_a_lesion_bootstrap_when_patients_differ():
    """Lesions of one patient alike, patients different: resampling patients is what shows it."""
    rng = np.random.default_rng(4)
    patients = [(y, list(np.full(20, rng.uniform(0.2, 0.8)) + rng.normal(0, 0.01, 20))) for y in [0, 1] * 4]
    predictions = _predictions(patients)
    by_patient = bootstrap_intervals(predictions, 1000, seed=0)
    as_if_independent = bootstrap_intervals(
        predictions.assign(patient_id=[f"L{i}" for i in range(len(predictions))]), 1000, seed=0
    )
    width = lambda ci: ci["auc_ci_high"] - ci["auc_ci_low"]  # noqa: E731
    assert width(by_patient) > 2 * width(as_if_independent)


def test_model_ids_follow_the_training_data_and_cards_are_written(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    card = {"features": ["a"], "params": {"C": 1.0}, "seed": 1, "training_data_sha256": data_hash(frame, [0, 1, 1])}
    changed = {**card, "training_data_sha256": data_hash(frame.assign(a=[1.0, 2.0, 4.0]), [0, 1, 1])}
    assert model_id("knn_smote", card) == model_id("knn_smote", dict(card))
    assert model_id("knn_smote", card) != model_id("knn_smote", changed)
    path = save_model(tmp_path, "m1", {"weights": [1, 2]}, card)
    saved = json.loads((tmp_path / "m1.json").read_text())
    assert path.is_file() and saved["model_id"] == "m1" and saved["features"] == ["a"]
    assert saved["libraries"]["scikit-learn"] != "not installed"


def test_the_study_file_names_exactly_the_classifiers_and_resamplers_ml_builds():
    from metorigin.core import study
    from metorigin.study.classifiers import CLASSIFIERS, RESAMPLERS

    assert tuple(c.name for c in CLASSIFIERS) == study.CLASSIFIERS and tuple(RESAMPLERS) == study.RESAMPLERS


def test_a_grown_cohort_keeps_every_patient_in_its_set_and_only_new_ones_are_drawn():
    settings = SplitSettings(test_patients_per_class=3, validation_fraction=0.2)
    first = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(20)], "label": ["a", "b"] * 10})
    before = split_patients(first, settings, seed=4)
    assigned = dict(zip(before["patient_id"], before["set"]))  # everyone ever assigned, P000-P001 too
    arrivals = pd.DataFrame({"patient_id": [f"N{i:02d}" for i in range(40)], "label": "a"})
    grown = pd.concat([first.iloc[2:], arrivals])
    assert holds_out_every_class(assigned, grown)
    after = extend_split(assigned, grown, settings, seed=4).set_index("patient_id")["set"]
    kept = before.set_index("patient_id")["set"].iloc[2:]
    assert after[kept.index].equals(kept)  # nobody moves
    assert "P000" not in after.index and "P001" not in after.index  # who left, left
    new = after[after.index.str.startswith("N")]
    assert set(new) == {"train", "validation"} and 0 < (new == "validation").sum() < 20  # the test set never grows
    shuffled = extend_split(assigned, grown.sample(frac=1, random_state=1), settings, seed=4).set_index("patient_id")
    assert shuffled["set"].sort_index().equals(after.sort_index())  # the same arrivals, the same sets
    back = extend_split(assigned, first, settings, seed=4).set_index("patient_id")["set"]
    assert back.equals(before.set_index("patient_id")["set"])  # who comes back keeps the set they had
    no_test_b = {
        p: s for p, s in assigned.items() if not (s == "test" and p in set(first.loc[first.label == "b", "patient_id"]))
    }
    assert not holds_out_every_class(no_test_b, first)  # then a new split must be drawn


def test_the_balanced_densenet_output_moved_to_the_training_prevalence_matches_an_unweighted_fit():
    """What `at_training_prevalence` undoes: class weights move a logistic model's intercept by the
    log odds of the training prevalence, and nothing else (the ranking stays)."""
    from sklearn.linear_model import LogisticRegression

    from metorigin.study.densenet import at_training_prevalence

    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.75).astype(int)  # three positives to one, as the study's test lesions
    x = (rng.normal(size=4000) + 1.2 * y).reshape(-1, 1)
    balanced = LogisticRegression(class_weight="balanced").fit(x, y).predict_proba(x)[:, 1]
    plain = LogisticRegression().fit(x, y).predict_proba(x)[:, 1]
    moved = at_training_prevalence(balanced, y)
    assert np.abs(balanced - plain).max() > 0.15  # the weights do move the probabilities
    assert np.abs(moved - plain).max() < 0.02
    assert (np.argsort(moved) == np.argsort(balanced)).all()
    assert at_training_prevalence(np.array([0.5]), np.array([0, 1])) == pytest.approx([0.5])
