"""Tables 1-3 as the paper prints them, with what stands beside them (the comparisons with the best
model, the permutation test, the split repeats): one definition for the report, `metorigin tables`
and the UI, each table with the SQL that reads it."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from metorigin.report.report_data import QUERIES, ReportTables
from metorigin.study.robustness import split_spread
from metorigin.study.tables import (
    UNLABELLED,
    UNLABELLED_NOTE,
    comparison_rows,
    permutation_summary,
    readable_feature,
    split_table_rows,
    table1_frame,
    table2_rows,
    table3_rows,
)

# The queries (report_data.QUERIES) the tables read: `metorigin tables` runs only these.
READS = (
    "settings",
    "table1",
    "table2",
    "table3",
    "metric_intervals",
    "comparisons",
    "permutation_null",
    "split_repeats",
)
EARLIER = "from an earlier run with other robustness settings: this study's has not finished"


@dataclass
class PaperTable:
    name: str
    title: str
    frame: pd.DataFrame
    sql: str
    notes: list[str] = field(default_factory=list)


def _robustness_note(frame: pd.DataFrame, current_hash: str | None) -> list[str]:
    """A warning when the rows are not this study's robustness settings': its step failed or has
    not run since they changed, and the previous results are still published."""
    stale = current_hash is not None and not frame.empty and frame["settings_hash"].iloc[0] != current_hash
    return [f"({EARLIER})"] if stale else []


def paper_tables(tables: ReportTables, robustness_hash: str | None = None) -> dict[str, PaperTable]:
    """Every table the store can fill (absent ones are left out; `tables.missing` says why)."""
    out = {}
    if tables.has("table1"):
        frame = table1_frame(tables.get("table1"))
        notes = [UNLABELLED_NOTE] if UNLABELLED in frame.columns else []
        out["table1"] = PaperTable("table1", "Table 1: cohort characteristics", frame, QUERIES["table1"][0], notes)
    if tables.has("table2"):
        importance = tables.get("table2")
        rows = pd.DataFrame(table2_rows(importance, None, readable_feature))
        keys = importance[importance["kept"]].sort_values("rank")["feature_name"].to_numpy()
        out["table2"] = PaperTable(
            "table2",
            "Table 2: kept features by permutation importance on the training patients",
            rows.assign(pyradiomics=keys) if len(rows) else rows,
            QUERIES["table2"][0],
        )
    comparisons = tables.get("comparisons")
    best = comparisons["best_model_id"].iloc[0] if comparisons is not None and len(comparisons) else None
    if tables.has("table3", "metric_intervals"):
        rows, notes = table3_rows(tables.get("table3"), tables.get("metric_intervals"), tables.classes, best)
        null = tables.get("permutation_null")
        if null is not None and len(null):
            notes += [*_robustness_note(null, robustness_hash), "Permutation test: " + permutation_summary(null)]
        out["table3"] = PaperTable(
            "table3",
            "Table 3: every model on the test patients (95% patient-bootstrap CI), the nested CV on the training "
            "patients beside",
            pd.DataFrame(rows),
            f"{QUERIES['table3'][0]};\n{QUERIES['metric_intervals'][0]}",
            notes,
        )
    if comparisons is not None and len(comparisons):
        rows, notes = comparison_rows(comparisons)
        out["comparisons"] = PaperTable(
            "comparisons",
            f"Each model against the one nested CV chose ({best}): paired patient-bootstrap difference in test AUC",
            pd.DataFrame(rows),
            QUERIES["comparisons"][0],
            notes,
        )
    repeats = tables.get("split_repeats")
    if repeats is not None and repeats["repeat"].nunique() > 1:
        out["split_repeats"] = PaperTable(
            "split_repeats",
            f"Test AUC over {repeats['repeat'].nunique()} seeded test splits (the study's first)",
            pd.DataFrame(split_table_rows(split_spread(repeats))),
            QUERIES["split_repeats"][0],
            _robustness_note(repeats, robustness_hash),
        )
    return out


def external_table3(metrics: pd.DataFrame) -> PaperTable:
    """Table 3 of an external validation: every frozen model on this cohort (95% patient-bootstrap
    CI), the model's own test AUC and nested-CV estimate from its training store beside it."""
    rows, notes = table3_rows(metrics)
    frame = pd.DataFrame(rows).assign(
        **{
            "its own test AUC": [f"{v:.2f}" for v in metrics["internal_auc"]],
            "out-of-distribution scans": metrics["out_of_distribution_scans"].to_numpy(),
        }
    )
    source = metrics["models_store"].iloc[0] if len(metrics) else ""
    notes = [
        f"The frozen models of {source}: nothing refitted (scaler, filter, classifier, calibration, weights).",
        *notes,
    ]
    return PaperTable("external_table3", "Table 3, external validation", frame, QUERIES["external_metrics"][0], notes)
