"""What the study report reads from the feature store, each table by the SQL that reads it.

The report prints every query beside its table, so a reader can run it again on the same store
(`metorigin sql --store STORE "..."`); a table the store does not hold yet is recorded as missing,
with the command that fills it, instead of failing the whole report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from metorigin.core.study import LabelSettings

FEATURES = "metorigin run --cohort COHORT --store STORE (the feature store: cohort, lesions, radiomics)"
STUDY = "metorigin run --cohort COHORT --store STORE --select group:study (the study's models and their evaluation)"
VALIDATE = "metorigin validate --models STORE_A --cohort COHORT --store STORE (another store's frozen models here)"

# name -> (SQL, the command that fills the tables it reads)
QUERIES: dict[str, tuple[str, str]] = {
    "settings": ("select key, value from study_settings order by key", FEATURES),
    "table1": (
        "select characteristic, level, cohort, display, row_order from cohort_characteristics "
        "order by row_order, characteristic, level, cohort",
        FEATURES,
    ),
    "patients": ("select patient_id, label from patients order by patient_id", FEATURES),
    "scans": (
        "select scan_id, patient_id, included, exclusion_reason from scans order by scan_id",
        FEATURES,
    ),
    "lesions": (
        "select l.lesion_id, l.scan_id, l.patient_id, p.label, l.max_diameter_mm, l.included, l.exclusion_reason "
        "from lesions l join patients p using (patient_id) order by l.lesion_id",
        FEATURES,
    ),
    "burden": (
        "select patient_id, label, n_lesions, tumor_burden from tumor_burden where level = 'patient' "
        "order by patient_id",
        FEATURES,
    ),
    "split": ("select patient_id, label, set, n_lesions from patient_split order by patient_id", STUDY),
    "table2": (
        "select rank, feature_name, importance, importance_sd, kept, redundant_with, abs_r, drop_reason "
        "from feature_importance order by rank nulls last, feature_name",
        STUDY,
    ),
    "training_lesions": (
        "select m.* from training_matrix m join patient_split s using (patient_id) "
        "where s.set <> 'test' order by m.lesion_id",
        STUDY,
    ),
    "table3": ("select * from model_metrics order by arm, model, resampler", STUDY),
    # Models `metorigin forget` deleted (a patient they learnt from was erased): the registry keeps them.
    "deleted_models": ("select model_id, removed from models where removed is not null order by model_id", STUDY),
    "metric_intervals": (
        "select * from metric_intervals order by model_id, level, threshold, metric",
        STUDY,
    ),
    "comparisons": ("select * from model_comparisons order by level, model_id", STUDY),
    "test_predictions": (
        "select lesion_id, scan_id, patient_id, label, probability, predicted_label, model_id, arm, model, "
        "resampler from lesion_predictions where evaluation = 'test' order by model_id, lesion_id",
        STUDY,
    ),
    "cv_predictions": (
        "select model_id, repeat, fold, label, probability from cv_predictions order by model_id, repeat, fold",
        STUDY,
    ),
    "example_slices": (
        # The largest slice of each training lesion: the example figure never shows a test patient.
        "select * from (select l.lesion_id, l.patient_id, s.label, l.slices_file, l.array_row, l.lesion_area_mm2, "
        "row_number() over (partition by l.lesion_id order by l.lesion_area_px desc, l.slice_index) as k "
        "from lesion_slices l join patient_split s using (patient_id) where s.set = 'train') where k = 1 "
        "order by label, lesion_area_mm2 desc, lesion_id",
        STUDY,
    ),
    "test_scans": (
        "select s.scan_id, s.patient_id, p.label from scans s join patient_split p using (patient_id) "
        "where p.set = 'test' and s.included order by p.label, s.patient_id, s.scan_id",
        STUDY,
    ),
    "external_metrics": ("select * from external_metrics order by arm, model, resampler", VALIDATE),
    "external_predictions": (
        "select lesion_id, scan_id, patient_id, label, probability, predicted_label, model_id, arm, model, "
        "resampler from external_predictions order by model_id, lesion_id",
        VALIDATE,
    ),
    "permutation_null": ("select * from permutation_null order by permutation", STUDY),
    "split_repeats": ("select * from split_repeats order by repeat, classifier, resampler", STUDY),
}

ID_COLUMNS = {"patient_id": "patient", "scan_id": "scan", "lesion_id": "lesion"}


@dataclass
class ReportTables:
    """Every query's result (None where the store lacks a table) and the study's label settings."""

    frames: dict[str, pd.DataFrame | None]
    missing: dict[str, str] = field(default_factory=dict)  # query name -> why and the command that fills it

    def get(self, name: str) -> pd.DataFrame | None:
        return self.frames.get(name)

    def has(self, *names: str) -> bool:
        return all(self.frames.get(n) is not None for n in names)

    def setting(self, key: str, default=None):
        settings = self.frames.get("settings")
        if settings is None:
            return default
        rows = settings.loc[settings["key"] == key, "value"]
        return json.loads(rows.iloc[0]) if len(rows) else default

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.setting("label.classes", ()))

    @property
    def label(self) -> LabelSettings:
        """The study's label settings as the store recorded them (the results were computed with these)."""
        return LabelSettings(
            column=self.setting("label.column"), classes=self.classes, positive=self.setting("label.positive")
        )


def read_tables(con: duckdb.DuckDBPyConnection, names: tuple[str, ...] = tuple(QUERIES)) -> ReportTables:
    """Run the named queries (every one by default); a missing table (a store that has not run the
    study yet) is noted, not fatal."""
    frames, missing = {}, {}
    for name in names:
        sql, command = QUERIES[name]
        try:
            frames[name] = con.execute(sql).df()
        except duckdb.CatalogException as error:
            frames[name] = None
            missing[name] = f"{str(error).splitlines()[0]}; fill it with `{command}`"
        except duckdb.BinderException as error:  # a table of an older store layout
            frames[name] = None
            missing[name] = f"{str(error).splitlines()[0]} (an older layout); rebuild it with `{command} --force`"
    return ReportTables(frames, missing)


def anonymised(tables: ReportTables) -> ReportTables:
    """Patient, scan and lesion ids replaced by sequence numbers (patient-001, scan-001,
    lesion-0001), the same number for the same id in every table, and no image, for a report shared
    outside the group. The words keep a code from ever reading as one of the cohort's own ids."""
    ids: dict[str, dict[str, str]] = {column: {} for column in ID_COLUMNS}
    for frame in tables.frames.values():
        for column in ID_COLUMNS:
            if frame is not None and column in frame:
                ids[column].update(dict.fromkeys(frame[column].dropna().astype(str)))
    codes = {
        column: {
            value: f"{ID_COLUMNS[column]}-{n:0{4 if column == 'lesion_id' else 3}d}"
            for n, value in enumerate(sorted(values), 1)
        }
        for column, values in ids.items()
    }
    frames = {
        name: None
        if frame is None
        else frame.assign(**{c: frame[c].astype(str).map(codes[c]) for c in ID_COLUMNS if c in frame})
        for name, frame in tables.frames.items()
    }
    frames["example_slices"] = frames["test_scans"] = None  # no image leaves the group
    if frames.get("settings") is not None:  # paths name people and places: their file names only
        frames["settings"] = frames["settings"].assign(value=[_file_name(k, v) for k, v in frames["settings"].values])
    return ReportTables(frames, dict(tables.missing))


def _file_name(key: str, value: str) -> str:
    if not key.endswith(("_file", "_dir")) or json.loads(value) is None:
        return value
    return json.dumps(Path(json.loads(value)).name)
