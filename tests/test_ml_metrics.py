"""Per-class metrics, calibration, degenerate intervals and the paired model comparison, on data
whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit

from metorigin.core.study import LabelSettings
from metorigin.study.comparison import compare_with_best
from metorigin.study.metrics import (
    FIXED,
    at_threshold,
    calibration_line,
    every_model_intervals,
    metric_intervals,
    youden_threshold,
)
from metorigin.study.tables import comparisons_table

LABEL = LabelSettings()


def _lesions(model_id: str, probability_of, n_patients: int = 20, per_patient: int = 3, seed: int = 0) -> pd.DataFrame:
    """Half the patients of each class, `per_patient` lesions each; probability_of(y, rng) -> p."""
    rng = np.random.default_rng(seed)
    rows = []
    for patient in range(n_patients):
        y = patient % 2
        for lesion in range(per_patient):
            rows.append({"patient_id": f"P{patient:02d}", "lesion_id": f"P{patient:02d}-{lesion}", "y_true": y})
    frame = pd.DataFrame(rows)
    return frame.assign(model_id=model_id, probability=probability_of(frame["y_true"].to_numpy(), rng))


def test_per_class_metrics_count_what_each_class_gets_right():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1])  # 3 of 4 positives, 5 of 6 negatives
    values = at_threshold(y, p, 0.5, LABEL)
    positive, negative = LABEL.positive, LABEL.negative
    assert values[f"sensitivity[{positive}]"] == pytest.approx(3 / 4)
    assert values[f"sensitivity[{negative}]"] == values[f"specificity[{positive}]"] == pytest.approx(5 / 6)
    assert values[f"ppv[{positive}]"] == pytest.approx(3 / 4) and values[f"npv[{positive}]"] == pytest.approx(5 / 6)
    assert values["balanced_accuracy"] == pytest.approx((3 / 4 + 5 / 6) / 2)
    assert values["accuracy"] == pytest.approx(8 / 10)


def test_youden_threshold_falls_between_the_two_groups():
    y = np.array([0] * 50 + [1] * 50)
    p = np.concatenate([np.linspace(0.05, 0.3, 50), np.linspace(0.4, 0.6, 50)])
    threshold = youden_threshold(y, p, "out-of-fold, training patients")
    assert 0.3 < threshold.value <= 0.4 and threshold.name == "youden (out-of-fold, training patients)"


def test_each_model_s_second_cut_off_comes_from_the_rows_its_arm_names_never_the_test_rows():
    def rows(model_id: str, arm: str, fit: str, fit_classes: tuple) -> pd.DataFrame:
        test = _lesions(model_id, lambda y, rng: np.where(y == 1, 0.9, 0.1)).assign(evaluation="test")
        chosen = _lesions(model_id, lambda y, rng: np.where(y == 1, 0.35, 0.2), seed=1).assign(evaluation=fit)
        return pd.concat([test, chosen[chosen["y_true"].isin(fit_classes)]]).assign(arm=arm, model="m", resampler=None)

    predictions = pd.concat([rows("a", "oof_arm", "out_of_fold", (0, 1)), rows("b", "val_arm", "validation", (1,))])
    sources = {"oof_arm": ("out_of_fold", "out-of-fold"), "val_arm": ("validation", "validation patients")}
    table = every_model_intervals(predictions, sources, LABEL, resamples=50, seed=0)
    thresholds = table.dropna(subset=["threshold"]).groupby("model_id")["threshold"].unique().map(sorted).to_dict()
    assert thresholds["b"] == ["0.5"]  # its validation rows hold one class: no second cut-off
    (youden,) = [t for t in thresholds["a"] if t != "0.5"]
    assert youden.startswith("youden (out-of-fold)")
    cut = table.loc[(table["model_id"] == "a") & (table["threshold"] == youden), "threshold_value"].iloc[0]
    assert 0.2 < cut <= 0.35  # between the out-of-fold rows' groups, not the test rows' (0.1 and 0.9)
    assert set(table["arm"]) == {"oof_arm", "val_arm"} and table["model"].eq("m").all()


def test_calibration_line_of_true_probabilities_is_the_diagonal_and_overconfidence_flattens_it():
    rng = np.random.default_rng(0)  # 94% of seeds' intervals hold the truth (200 tried): this one does
    p = rng.uniform(0.02, 0.98, 5000)
    y = rng.uniform(size=p.size) < p
    line = calibration_line(y, p)
    assert abs(line["calibration_slope"][0] - 1) < 0.2 and abs(line["calibration_intercept"][0]) < 0.2
    assert line["calibration_slope"][1] < 1 < line["calibration_slope"][2]  # the interval holds the truth
    overconfident = expit(2 * logit(p))
    assert calibration_line(y, overconfident)["calibration_slope"][0] == pytest.approx(0.5, abs=0.1)


def test_a_perfect_separation_of_eight_patients_is_flagged_degenerate_not_certain():
    perfect = _lesions("m", lambda y, rng: np.where(y == 1, 0.9, 0.1), n_patients=8)
    table = metric_intervals(perfect, [FIXED], LABEL, resamples=200, seed=0).set_index(["level", "metric"])
    auc = table.loc[("patient", "auc")]
    assert (auc["estimate"], auc["ci_low"], auc["ci_high"]) == (1.0, 1.0, 1.0)
    assert auc["flag"] == "degenerate (n test patients = 8)"
    noisy = _lesions("m", lambda y, rng: rng.uniform(size=y.size), n_patients=8)
    table = metric_intervals(noisy, [FIXED], LABEL, resamples=200, seed=0).set_index(["level", "metric"])
    assert pd.isna(table.loc[("lesion", "auc"), "flag"])
    assert table.loc[("lesion", "auc"), "ci_low"] < table.loc[("lesion", "auc"), "ci_high"]
    assert set(table.index.get_level_values("metric")) >= {
        "balanced_accuracy",
        "brier",
        "calibration_slope",
        f"sensitivity[{LABEL.positive}]",
        f"specificity[{LABEL.negative}]",
    }


def test_identical_models_differ_by_zero_with_p_one():
    a = _lesions("a", lambda y, rng: np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, y.size), 0, 1))
    table = compare_with_best(pd.concat([a, a.assign(model_id="b")]), "a", resamples=200, seed=0)
    assert list(table["level"]) == ["lesion", "patient"]
    assert (table["difference"] == 0).all() and (table["ci_low"] == 0).all() and (table["ci_high"] == 0).all()
    assert (table["p_value"] == 1).all() and (table["p_holm"] == 1).all()
    # A zero-width interval is flagged, and printed with the mark and its footnote.
    assert table["flag"].str.startswith("degenerate (n test patients = ").all()
    printed = comparisons_table(table)
    assert "0.00 [0.00, 0.00]†" in printed and printed.endswith(f"† {table['flag'].iloc[0]}")


def test_a_clearly_worse_model_has_an_interval_that_excludes_zero():
    strong = _lesions("best", lambda y, rng: np.clip(y * 0.6 + rng.uniform(0, 0.4, y.size), 0, 1), n_patients=30)
    noise = strong.assign(model_id="noise", probability=np.random.default_rng(1).uniform(size=len(strong)))
    table = compare_with_best(pd.concat([strong, noise]), "best", resamples=300, seed=0).set_index("level")
    assert (table["ci_high"] < 0).all() and table["flag"].isna().all()
    assert (table["p_value"] < 0.01).all() and (table["p_holm"] >= table["p_value"]).all()


def test_a_table3_without_interval_rows_still_marks_a_degenerate_interval():
    """An external validation's Table 3 has no metric_intervals rows: a zero-width AUC interval is
    marked there too, with the test patients that made it so."""
    from metorigin.study.tables import DEGENERATE, table3

    metric = dict(arm="radiomics", model="knn", model_id="knn-1", resampler="smote", cv_auc=float("nan"))
    metric |= dict(auc=0.9, auc_ci_low=0.8, auc_ci_high=0.95, n_test_lesions=40, n_test_patients=8)
    metric |= dict(patient_auc=1.0, patient_auc_ci_low=1.0, patient_auc_ci_high=1.0)
    text = table3(pd.DataFrame([metric]))
    assert f"1.00 [1.00, 1.00]{DEGENERATE}" in text and f"0.90 [0.80, 0.95]{DEGENERATE}" not in text
    assert text.endswith(f"{DEGENERATE} degenerate (n test patients = 8)")
