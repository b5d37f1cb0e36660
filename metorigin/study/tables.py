"""Tables 2 and 3 as the study prints them, for the Dagster UI and the written report."""

from __future__ import annotations

import re

import pandas as pd

from metorigin.core.markdown import markdown_table
from metorigin.core.study import UNLABELLED
from metorigin.study.evaluation import degenerate_flag
from metorigin.study.robustness import OBSERVED, PERMUTED


def readable_feature(name: str) -> str:
    """`original_glcm_Idmn` -> `GLCM · Idmn` (the image type is kept when it is not the original)."""
    parts = name.split("_", 2)
    if len(parts) != 3:
        return name
    image, family, feature = parts
    family = {"firstorder": "First order", "shape": "Shape"}.get(family, family.upper())
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", feature)
    return f"{family} · {spaced}" if image == "original" else f"{family} · {spaced} ({image})"


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _interval(value: float, low: float, high: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.2f} [{low:.2f}, {high:.2f}]"


# Table 1's cohort UNLABELLED (core/study.py; cohort_characteristics.sql names it): the patients
# whose label cell is empty, measured and scored like the others, never trained on.
UNLABELLED_NOTE = (
    "unlabelled: patients with an empty label cell; measured and scored, never trained, tuned or tested on."
)


def table1_frame(characteristics: pd.DataFrame) -> pd.DataFrame:
    """Table 1 as the study lays it out: one row per characteristic and level, a column per class,
    then `unlabelled` last (only when the cohort has such patients: the SQL has no rows otherwise)."""
    frame = (
        characteristics.pivot_table(
            index=["row_order", "characteristic", "level"], columns="cohort", values="display", aggfunc="first"
        )
        .reset_index()
        .drop(columns="row_order")
        .fillna("")
        .rename_axis(columns=None)
    )
    return frame[[c for c in frame.columns if c != UNLABELLED] + [c for c in frame.columns if c == UNLABELLED]]


def table2_rows(importance: pd.DataFrame, top: int | None = 10, readable=str) -> list[dict]:
    """The kept features by permutation importance; `readable` turns a pyradiomics key into a name."""
    kept = importance[importance["kept"]].sort_values("rank").head(top)
    return [
        {
            "rank": int(r["rank"]),
            "feature": readable(r["feature_name"]),
            "permutation importance": f"{r['importance']:.6f}",
            "sd": f"{r['importance_sd']:.6f}",
        }
        for _, r in kept.iterrows()
    ]


def table2(importance: pd.DataFrame, top: int = 10) -> str:
    return markdown_table(table2_rows(importance, top, readable_feature))


DEGENERATE = "†"  # marks an interval of zero width (every bootstrap resample gave the same value)


def _cell(row: pd.Series | None) -> str:
    if row is None or pd.isna(row["estimate"]):
        return "n/a"
    mark = DEGENERATE if isinstance(row.get("flag"), str) and row["flag"] else ""
    return f"{row['estimate']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]{mark}"


BEST = "★"  # marks the model the training patients' nested CV chose (model_comparisons.best_model_id)


def _marked(m: pd.Series, metric: str, flags: set) -> str:
    """An AUC and its interval, with the dagger where the interval has no width (an external
    validation's table, which has no `metric_intervals` rows to carry the flag)."""
    value, low, high = m[metric], m[f"{metric}_ci_low"], m[f"{metric}_ci_high"]
    if pd.isna(value) or low != high:
        return _interval(value, low, high)
    flags.add(degenerate_flag(int(m["n_test_patients"])))
    return f"{_interval(value, low, high)}{DEGENERATE}"


def table3_rows(
    metrics: pd.DataFrame, intervals: pd.DataFrame | None = None, classes: tuple[str, ...] = (), best: str | None = None
) -> tuple[list[dict], list[str]]:
    """One row per model: test AUC with its 95% patient-bootstrap interval (lesion and patient
    level), and where `intervals` (the `metric_intervals` table) is given, the lesion-level balanced
    accuracy and each class's sensitivity at the threshold chosen without the test patients, and the
    Brier score; then the nested CV estimate with its corrected interval. A dagger marks a
    degenerate interval; the footnotes say how many test patients made it so. A star marks `best`."""
    rows, flags = [], set()
    for _, m in metrics.iterrows():
        row = {
            "arm": m["arm"],
            "model": m["model"] + (f" {BEST}" if m["model_id"] == best else ""),
            "resampler": _text(m["resampler"]),
            "AUC [95% CI]": _marked(m, "auc", flags),
            "patient AUC [95% CI]": _marked(m, "patient_auc", flags),
        }
        if intervals is not None:
            ours = intervals[intervals["model_id"] == m["model_id"]]
            pick = {
                (r["level"], r["threshold"] if isinstance(r["threshold"], str) else "", r["metric"]): r
                for _, r in ours.iterrows()
            }
            chosen = [t for level, t, _ in pick if level == "lesion" and t.startswith("youden")]
            at = chosen[0] if chosen else "0.5"
            row["AUC [95% CI]"] = _cell(pick.get(("lesion", "", "auc")))
            row["patient AUC [95% CI]"] = _cell(pick.get(("patient", "", "auc")))
            row["threshold"] = at
            row["balanced accuracy"] = _cell(pick.get(("lesion", at, "balanced_accuracy")))
            for name in classes:
                row[f"sensitivity {name}"] = _cell(pick.get(("lesion", at, f"sensitivity[{name}]")))
            row["Brier"] = _cell(pick.get(("lesion", "", "brier")))
            flags |= set(ours["flag"].dropna())
        row["nested CV AUC [95% CI]"] = (
            "n/a" if pd.isna(m.get("cv_auc")) else _interval(m["cv_auc"], m["cv_auc_ci_low"], m["cv_auc_ci_high"])
        )
        row["test lesions / patients"] = f"{m['n_test_lesions']} / {m['n_test_patients']}"
        rows.append(row)
    notes = (
        [f"{BEST} chosen by nested cross-validation on the training patients, before any test score"] if best else []
    )
    return rows, (notes if best else []) + [f"{DEGENERATE} {flag}" for flag in sorted(flags)]


def table3(metrics: pd.DataFrame, intervals: pd.DataFrame | None = None, classes: tuple[str, ...] = ()) -> str:
    rows, notes = table3_rows(metrics, intervals, classes)
    return markdown_table(rows) + "".join(f"\n{note}" for note in notes)


def comparison_rows(comparisons: pd.DataFrame) -> tuple[list[dict], list[str]]:
    """Each model's test AUC minus the best model's, with its paired-bootstrap interval (a dagger
    where it is degenerate) and p-values; and the footnotes of the daggers."""
    difference = comparisons.rename(columns={"difference": "estimate"})
    rows = [
        {
            "model": r["model_id"],
            "level": r["level"],
            "AUC - best AUC [95% CI]": _cell(r),
            "p": f"{r['p_value']:.3f}",
            "p (Holm)": f"{r['p_holm']:.3f}",
        }
        for _, r in difference.sort_values(["level", "estimate"], ascending=[True, False]).iterrows()
    ]
    flags = sorted(difference["flag"].dropna().unique()) if "flag" in difference else []
    return rows, [f"{DEGENERATE} {flag}" for flag in flags]


def comparisons_table(comparisons: pd.DataFrame) -> str:
    if comparisons.empty:
        return "no other model to compare"
    rows, notes = comparison_rows(comparisons)
    return markdown_table(rows) + "".join(f"\n{note}" for note in notes)


def auc_metadata(metrics: pd.DataFrame) -> dict[str, float]:
    """Numeric metadata per model, so the UI plots each AUC across runs."""
    out = {}
    for _, m in metrics.iterrows():
        name = "_".join(_text(part) for part in (m["model"], m["resampler"]) if _text(part))
        out[f"auc_{name}"] = round(float(m["auc"]), 3)
        if pd.notna(m.get("cv_auc")):
            out[f"cv_auc_{name}"] = round(float(m["cv_auc"]), 3)
    return out


def permutation_summary(null: pd.DataFrame) -> str:
    """The permutation test in one sentence: observed best AUC, its null, and the p-value."""
    observed = null[null["labels"] == OBSERVED].iloc[0]
    permuted = null[null["labels"] == PERMUTED]
    if permuted.empty:
        return f"best test AUC {observed['max_auc']:.2f}; no permutation run (robustness.permutations: 0)"
    failed = int(permuted["max_auc"].isna().sum())
    unfit = f"; {failed} permuted round(s) where no pipeline could fit count against it" if failed else ""
    floor = 1 / (len(permuted) + 1)
    return (
        f"best test AUC over the radiomics pipelines {observed['max_auc']:.2f} ({observed['classifier']} "
        f"{observed['resampler']}); with the training patients' labels permuted {len(permuted)} times: median "
        f"{permuted['max_auc'].median():.2f}, 95th percentile {permuted['max_auc'].quantile(0.95):.2f}{unfit}; "
        f"p = {observed['p_value']:.3f} (the smallest {len(permuted)} permutations allow: {floor:.3f})"
    )


def split_table_rows(spread: pd.DataFrame) -> list[dict]:
    """Each pipeline's test AUC on the study's split beside its spread over the other splits."""
    return [
        {
            "model": r["classifier"],
            "resampler": r["resampler"],
            "study split AUC": f"{r['study_split_auc']:.2f}",
            "median over splits [2.5-97.5%]": _interval(r["median_auc"], r["auc_p2_5"], r["auc_p97_5"]),
            "splits": int(r["n_splits"]),
        }
        for _, r in spread.sort_values("median_auc", ascending=False).iterrows()
    ]


def split_table(spread: pd.DataFrame) -> str:
    return markdown_table(split_table_rows(spread))
