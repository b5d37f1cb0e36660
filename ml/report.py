"""Tables 2 and 3 as the study prints them, for the Dagster UI and the written report."""

from __future__ import annotations

import pandas as pd

from base.markdown import markdown_table


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _interval(value: float, low: float, high: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.2f} [{low:.2f}, {high:.2f}]"


def table2(importance: pd.DataFrame, top: int = 10) -> str:
    kept = importance[importance["kept"]].sort_values("rank").head(top)
    return markdown_table(
        [
            {
                "rank": int(r["rank"]),
                "feature": r["feature_name"],
                "permutation importance": f"{r['importance']:.6f}",
                "sd": f"{r['importance_sd']:.6f}",
            }
            for _, r in kept.iterrows()
        ]
    )


def table3(metrics: pd.DataFrame) -> str:
    """One row per model: single-split AUC and accuracy with 95% patient-bootstrap intervals,
    patient-level AUC, and the repeated cross-validation estimate beside them."""
    rows = []
    for _, m in metrics.iterrows():
        rows.append(
            {
                "arm": m["arm"],
                "model": m["model"],
                "resampler": _text(m["resampler"]),
                "AUC [95% CI]": _interval(m["auc"], m["auc_ci_low"], m["auc_ci_high"]),
                "accuracy [95% CI]": _interval(m["accuracy"], m["accuracy_ci_low"], m["accuracy_ci_high"]),
                "patient AUC [95% CI]": _interval(m["patient_auc"], m["patient_auc_ci_low"], m["patient_auc_ci_high"]),
                "repeated CV AUC (sd)": "n/a"
                if pd.isna(m.get("cv_auc"))
                else f"{m['cv_auc']:.2f} ({m['cv_auc_sd']:.2f})",
                "test lesions / patients": f"{m['n_test_lesions']} / {m['n_test_patients']}",
            }
        )
    return markdown_table(rows)


def auc_metadata(metrics: pd.DataFrame) -> dict[str, float]:
    """Numeric metadata per model, so the UI plots each AUC across runs."""
    out = {}
    for _, m in metrics.iterrows():
        name = "_".join(_text(part) for part in (m["model"], m["resampler"]) if _text(part))
        out[f"auc_{name}"] = float(m["auc"])
        if pd.notna(m.get("cv_auc")):
            out[f"cv_auc_{name}"] = float(m["cv_auc"])
    return out
