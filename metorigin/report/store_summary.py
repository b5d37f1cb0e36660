"""What the CLI prints of a store after a command: the cohort's counts, the model registry, the
external Table 3. The queries live here, beside the tables they read (report_data.py holds the
report's own)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from metorigin.core.store import Store
from metorigin.report.store_report import report_folder

# `removed` is absent from a registry published before `forget` deleted models
REGISTRY_COLUMNS = ("model_id", "arm", "model", "resampler", "auc", "cv_auc", "promoted", "created_at", "removed")


def table_names(con) -> set[str]:
    return {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}


def summary_lines(store: Store, store_path: Path, run_ids: list[str]) -> list[str]:
    """The cohort as the feature store holds it, where Tables 1-3 and the report are, the lake."""
    lines = []
    if store.duckdb_path.exists():
        with store.connect_read_only() as con:
            tables = table_names(con)
            if "patients" in tables:
                query = "select coalesce(label, 'unlabelled'), count(*) from patients group by 1 order by 1"
                rows = con.execute(query).fetchall()
                lines.append("patients: " + ", ".join(f"{n} {site}" for site, n in rows))
            if "scans" in tables:
                n, included, invalid = con.execute(
                    "select count(*), count(*) filter (where included), count(*) filter (where not valid) from scans"
                ).fetchone()
                lines.append(
                    f"scans: {included} of {n} included" + (f", {invalid} invalid (see above)" if invalid else "")
                )
                for sid, reason in con.execute(
                    "select scan_id, exclusion_reason from scans where valid and not included order by scan_id"
                ).fetchall():
                    lines.append(f"  excluded {sid}: {reason}")
            if "model_metrics" in tables:
                lines.append(f"Tables 1-3: metorigin tables --store {store_path}")
        lines.append(f'feature store: {store.duckdb_path}  (query: metorigin sql --store {store_path} "...")')
    written = [report_folder(store, run) / "report.html" for run in run_ids]
    lines += [f"report: {page.resolve()}" for page in written if page.is_file()]
    lines.append(f"lake: {store.lake}")
    return lines


def registry_listing(store: Store) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Every registered model (best first within its arm) and the promotions, oldest first; None
    before the study registered any."""
    with store.connect_read_only() as con:
        if "models" not in table_names(con):
            return None
        frame = con.execute("select * from models order by arm, cv_auc desc nulls last, auc desc").df()
        promotions = con.execute('select arm, model_id, who, "when", why from model_promotions').df()
    frame = frame[[c for c in REGISTRY_COLUMNS if c in frame.columns]].round({"auc": 3, "cv_auc": 3})
    return frame, promotions


def external_metrics(store: Store) -> pd.DataFrame | None:
    """The external validation's Table 3 rows; None where the store holds none."""
    with store.connect_read_only() as con:
        if "external_metrics" not in table_names(con):
            return None
        return con.execute("select * from external_metrics order by arm, model, resampler").df()


def has_views_over_lake(store: Store) -> int:
    """Views over the lake in a feature store published by an older metorigin (tables only now)."""
    with store.connect_read_only() as con:
        return con.execute("select count(*) from duckdb_views() where not internal").fetchone()[0]


def table1_rows(frame: pd.DataFrame) -> list[dict]:
    """`cohort_characteristics` (long) as Table 1 reads: one row per characteristic and level, one
    column per cohort, the display text in each cell."""
    if frame.empty:
        return []
    wide = frame.pivot_table(
        index=["characteristic", "level"], columns="cohort", values="display", aggfunc="first", sort=False
    )
    return wide.reset_index().rename_axis(columns=None).fillna("").to_dict("records")


def tumor_burden_rows(frame: pd.DataFrame) -> list[dict]:
    """`tumor_burden` per patient, by class: patients, median lesions and median burden (with IQR)."""
    patients = frame[frame["level"] == "patient"]
    rows = []
    for label, group in patients.groupby(patients["label"].fillna("unlabelled"), sort=True):
        burden = group["tumor_burden"].dropna()
        q1, median, q3 = (burden.quantile(q) for q in (0.25, 0.5, 0.75)) if len(burden) else (float("nan"),) * 3
        rows.append(
            {
                "class": label,
                "patients": len(group),
                "median lesions": f"{group['n_lesions'].median():.0f}",
                "median tumour burden [IQR]": f"{median:.1%} [{q1:.1%}, {q3:.1%}]",
            }
        )
    return rows
