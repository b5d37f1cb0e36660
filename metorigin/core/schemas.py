"""The lake tables' columns and types, declared once.

Every other place that knows a table's columns reads them from here: the assets conform the
frames they write (`conform`), dbt's staging models cast the lake files to these types (passed
to `dbt build` as the `lake_schemas` variable, rendered by the `stage` macro), the Great
Expectations suites check the column lists, and the Dagster assets show them as their column
schema in the UI. A column added here reaches all four; a column forgotten here is refused at write.

Types are DuckDB's names (the store's SQL dialect); pandas dtypes follow from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # VARCHAR | DOUBLE | INTEGER | BIGINT | BOOLEAN
    description: str = ""


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    description: str = ""

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def computed(self) -> list[str]:
        """The columns a pure step computes; `settings_hash` is stamped on by the Dagster wiring."""
        return [n for n in self.names if n != "settings_hash"]


def _table(name: str, description: str, *columns: tuple[str, str] | tuple[str, str, str]) -> TableSchema:
    return TableSchema(name, tuple(Column(*c) for c in columns), description)


V, D, INT, B, L = "VARCHAR", "DOUBLE", "INTEGER", "BOOLEAN", "BIGINT"
_SETTINGS_HASH = ("settings_hash", V, "hash of the study settings this step read (see study_settings)")

PATIENTS = _table(
    "patients",
    "one row per valid row of patients.csv",
    ("patient_id", V),
    ("label", V, "the class, from the study's label column; NULL when the cell is empty (never trained on)"),
    ("age", D),
    ("sex", V),
    ("t_stage", V),
    ("n_stage", V),
    ("m_stage", V),
    ("source_line", INT),
    _SETTINGS_HASH,
)

SCANS = _table(
    "scans",
    "one row per row of scans.csv, valid or not, with the inclusion decision",
    ("scan_id", V),
    ("patient_id", V),
    ("image", V),
    ("mask", V),
    ("liver_labels", V),
    ("lesion_labels", V),
    ("ignore_labels", V, "mask label values to treat as background ('*': every undeclared one)"),
    ("kernel", V),
    ("kernel_source", V),
    ("slice_thickness_mm", D),
    ("slice_thickness_source", V),
    ("contrast_phase", V),
    ("contrast_phase_source", V),
    ("image_format", V),
    ("size_x", INT),
    ("size_y", INT),
    ("size_z", INT),
    ("spacing_x", D),
    ("spacing_y", D),
    ("spacing_z", D),
    ("origin_x", D),
    ("origin_y", D),
    ("origin_z", D),
    ("direction", V),
    ("slice_tilt_deg", D),
    ("pixel_type", V),
    ("valid", B),
    ("error_kind", V),
    ("included", B),
    ("exclusion_reason", V),
    ("source_line", INT),
    _SETTINGS_HASH,
)

SEGMENTATIONS = _table(
    "segmentations",
    "the liver/lesion label map of each included scan, with volumes and liver HU",
    ("scan_id", V),
    ("patient_id", V),
    ("method", V),
    ("model_id", V),
    ("resampled", B),
    ("label_map", V),
    ("liver_volume_ml", D, "liver including lesions"),
    ("lesion_volume_ml", D),
    ("liver_parenchyma_mean_hu", D),
    ("voxel_volume_ml", D),
    _SETTINGS_HASH,
)

LESIONS = _table(
    "lesions",
    "one row per 3-D connected component of a scan's lesion mask",
    ("lesion_id", V),
    ("scan_id", V),
    ("patient_id", V),
    ("lesion_number", INT),
    ("voxel_count", L),
    ("volume_ml", D),
    ("max_diameter_mm", D),
    ("centroid_x_mm", D),
    ("centroid_y_mm", D),
    ("centroid_z_mm", D),
    ("bbox_x0", INT),
    ("bbox_x1", INT),
    ("bbox_y0", INT),
    ("bbox_y1", INT),
    ("bbox_z0", INT),
    ("bbox_z1", INT),
    ("mean_hu", D),
    ("included", B),
    ("exclusion_reason", V),
    _SETTINGS_HASH,
)

RADIOMICS_FEATURES = _table(
    "radiomics_features",
    "long format: one row per included lesion and pyradiomics feature",
    ("lesion_id", V),
    ("scan_id", V),
    ("patient_id", V),
    ("feature_name", V),
    ("feature_class", V),
    ("feature_value", D),
    ("undefined_reason", V, "why feature_value is NaN"),
    ("pyradiomics_version", V),
    _SETTINGS_HASH,
)

LESION_SLICES = _table(
    "lesion_slices",
    "the DenseNet input index: one row per axial slice of each included lesion",
    ("lesion_id", V),
    ("scan_id", V),
    ("patient_id", V),
    ("slice_index", INT),
    ("array_row", INT),
    ("lesion_area_px", INT),
    ("lesion_area_mm2", D),
    ("crop_side_mm", D),
    ("slices_file", V),
    _SETTINGS_HASH,
)

SCAN_INTEGRITY = _table(
    "scan_integrity",
    "the full-decode checks of each scan's image and mask, made before any of its results is written",
    ("scan_id", V),
    ("patient_id", V),
    ("status", V, "passed | failed (the scan is not processed and no mart counts it) | unchecked (processed before)"),
    ("problems", V, "what is wrong and the fix, one per line"),
    ("warnings", V, "e.g. a declared lesion label absent from the mask (0 lesions), one per line"),
    ("image_sha256", V),
    ("mask_sha256", V),
    ("declared_labels", V, "liver | lesion | ignored labels the mask was checked against"),
    ("labels_present", V),
    ("min_hu", D),
    ("max_hu", D),
    ("n_nonfinite", L, "NaN or infinite voxels"),
    ("liver_median_hu", D),
    ("checks_version", INT),
    ("checked_at", V, "when the files were decoded (a later run with the same files reuses the result)"),
    _SETTINGS_HASH,
)

STUDY_SETTINGS = _table(
    "study_settings",
    "the study this store holds, one row per setting",
    ("key", V, "dotted key path, as in a study file"),
    ("value", V, "the value as JSON"),
    ("section", V),
    ("read_by", V, "the pipeline steps whose settings hash covers it"),
    ("study_hash", V),
)

MODELS = _table(
    "models",
    "the model registry: every model the study trained, kept across retrainings (its card beside its file)",
    ("model_id", V),
    ("arm", V, "the model arm that trained it (a module of metorigin/arms/: docs/arms.md)"),
    ("model", V),
    ("resampler", V),
    ("created_at", V, "when the model was first registered (UTC)"),
    ("training_cohort_sha256", V, "sha256 of the training patients' ids (the card lists them)"),
    ("training_patients", INT),
    ("training_data_sha256", V, "sha256 of the exact training rows and labels"),
    ("settings_hash", V, "hash of the study settings its training step read"),
    ("input_settings_hash", V, "hash of the lesion, radiomics and slice settings its inputs were made under"),
    ("feature_list_hash", V),
    ("auc", D, "test AUC (lesion level)"),
    ("auc_ci_low", D),
    ("auc_ci_high", D),
    ("accuracy", D),
    ("patient_auc", D),
    ("cv_auc", D, "nested CV on the training patients (radiomics and baseline models)"),
    ("cv_auc_ci_low", D),
    ("cv_auc_ci_high", D),
    ("model_file", V, "relative to the store root"),
    ("file_sha256", V, "checked before every scoring: the file is the one registered"),
    ("needs_retraining", B, "a patient it learnt from or was tested on was erased (metorigin forget)"),
    ("removed", V, "when and why its file was deleted (metorigin forget: it learnt from an erased patient)"),
)

MODEL_PROMOTIONS = _table(
    "model_promotions",
    "every promotion, in order (<store>/promotions.jsonl); the last of an arm is in use",
    ("sequence", INT, "its line in the log: 1 is the first promotion"),
    ("model_id", V),
    ("arm", V),
    ("who", V),
    ("when", V, "UTC"),
    ("why", V),
    ("file_sha256", V),
    ("run_id", V, "the Dagster run that promoted it"),
)

SCAN_PREDICTIONS = _table(
    "scan_predictions",
    "every included lesion of a scan scored by each promoted model (frozen: nothing refitted)",
    ("lesion_id", V),
    ("scan_id", V),
    ("patient_id", V),
    ("model_id", V),
    ("arm", V),
    ("model", V),
    ("probability", D, "P(the study's positive class)"),
    ("predicted_label", V, "at the cut-off 0.5"),
    ("out_of_distribution", B, "the scan lies outside the model's training data (see distribution_notes)"),
    (
        "distribution_notes",
        V,
        "acquisition outside the training inclusion criteria; features far from the training lesions'",
    ),
    ("seen_in_training", B, "the patient was a training or validation patient of this model: not a test"),
    ("input_settings_hash", V, "hash of the settings the model's inputs were made under"),
    ("settings_hash", V, "the model's training settings hash"),
)

LAKE_TABLES: dict[str, TableSchema] = {
    t.name: t
    for t in (
        STUDY_SETTINGS,
        PATIENTS,
        SCANS,
        SCAN_INTEGRITY,
        SEGMENTATIONS,
        LESIONS,
        RADIOMICS_FEATURES,
        LESION_SLICES,
        MODELS,
        MODEL_PROMOTIONS,
        SCAN_PREDICTIONS,
    )
}

_PANDAS = {"VARCHAR": "object", "DOUBLE": "float64", "INTEGER": "Int64", "BIGINT": "Int64", "BOOLEAN": "bool"}


def conform(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """The frame with exactly the declared columns, in order, as the declared types.

    A missing or unexpected column is a programming error in the step that built the frame,
    caught here before anything reaches the lake.
    """
    missing = [c for c in schema.names if c not in frame.columns]
    extra = [c for c in frame.columns if c not in schema.names]
    if missing or extra:
        raise ValueError(
            f"{schema.name}: the frame does not match the declared schema "
            f"(missing {missing}, unexpected {extra}); declare columns in metorigin/core/schemas.py"
        )
    out = frame[schema.names].copy()
    for column in schema.columns:
        dtype = _PANDAS[column.type]
        if dtype != "object" and str(out[column.name].dtype) != dtype:
            out[column.name] = out[column.name].astype(dtype)
    return out


def dbt_columns(schema: TableSchema) -> list[list[str]]:
    """(name, type) pairs as the `stage` dbt macro reads them from the `lake_schemas` variable."""
    return [[c.name, c.type] for c in schema.columns]
