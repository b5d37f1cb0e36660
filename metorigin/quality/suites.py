"""Great Expectations suites for the tables the models learn from, and a runner that says which
expectation failed on which rows.

GX is imported inside `run_suite` (it costs seconds and hundreds of MB), so loading the Dagster
definitions stays fast. Rules that span several columns or tables (an undefined value must have a
recorded reason, a centroid must lie inside its image) are computed into helper columns first,
so each rule stays one plain expectation with its failing row ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from metorigin.core.config import quiet_libraries
from metorigin.core.geometry import index_to_physical
from metorigin.core.schemas import LESIONS, SCANS, TableSchema

HU_MIN, HU_MAX = -1024.0, 3071.0  # the range a 12-bit CT can store
ID_COLUMNS = ("lesion_id", "scan_id", "patient_id")


@dataclass
class ExpectationFailure:
    expectation: str
    column: str | None
    rows: list[str]
    detail: str


@dataclass
class SuiteResult:
    suite: str
    n_expectations: int
    failures: list[ExpectationFailure] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        if self.success:
            return f"{self.suite}: all {self.n_expectations} expectations met"
        return f"{self.suite}: {len(self.failures)} of {self.n_expectations} expectations failed"

    def lines(self) -> list[str]:
        return [
            f"{f.expectation}({f.column or ''}) failed on {len(f.rows)} row(s): "
            f"{', '.join(f.rows[:10])}{' ...' if len(f.rows) > 10 else ''} {f.detail}".strip()
            for f in self.failures
        ]


def run_suite(name: str, frame: pd.DataFrame, expectations: list, id_column: str) -> SuiteResult:
    quiet_libraries()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas(name).add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    validation = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    result = validation.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [id_column]},
    )
    out = SuiteResult(suite=name, n_expectations=len(expectations))
    for item in result.results:
        if item.success:
            continue
        config, detail = item.expectation_config, item.result or {}
        rows = [str(r[id_column]) for r in detail.get("unexpected_index_list") or []]
        observed = detail.get("observed_value")
        if config.type == "expect_table_columns_to_match_set":
            expected = set(config.kwargs["column_set"])
            found = set(observed or [])
            observed = f"missing {sorted(expected - found)}, unexpected {sorted(found - expected)}"
        out.failures.append(
            ExpectationFailure(
                expectation=config.type,
                column=config.kwargs.get("column"),
                rows=rows,
                detail=f"(observed: {observed})" if observed is not None and not rows else "",
            )
        )
    return out


def _gx():
    import great_expectations as gx

    return gx.expectations


def lesion_features_suite(wide: pd.DataFrame, undefined: pd.DataFrame, feature_names: list[str]) -> SuiteResult:
    """`undefined` holds (lesion_id, feature_name) pairs whose NaN has a recorded reason."""
    e = _gx()
    features = [c for c in wide.columns if c not in ID_COLUMNS]
    values = wide[features].to_numpy(dtype=float)
    recorded = np.zeros(values.shape, dtype=bool)
    if len(undefined):
        row_of = {lesion: i for i, lesion in enumerate(wide["lesion_id"])}
        col_of = {name: j for j, name in enumerate(features)}
        for lesion, name in undefined[["lesion_id", "feature_name"]].itertuples(index=False):
            if lesion in row_of and name in col_of:
                recorded[row_of[lesion], col_of[name]] = True
    frame = wide.assign(
        n_unexplained_missing=(np.isnan(values) & ~recorded).sum(axis=1), n_infinite=np.isinf(values).sum(axis=1)
    )
    expectations = [
        e.ExpectTableColumnsToMatchSet(
            column_set=[*ID_COLUMNS, *feature_names, "n_unexplained_missing", "n_infinite"], exact_match=True
        ),
        e.ExpectColumnValuesToBeBetween(column="n_unexplained_missing", max_value=0),
        e.ExpectColumnValuesToBeBetween(column="n_infinite", max_value=0),
    ]
    for column in ("original_shape_MeshVolume", "original_shape_VoxelVolume"):
        if column in frame:
            expectations.append(
                e.ExpectColumnValuesToBeBetween(column=column, min_value=0, strict_min=True, mostly=1.0)
            )
    for column in (
        "original_firstorder_Minimum",
        "original_firstorder_Maximum",
        "original_firstorder_Mean",
        "original_firstorder_Median",
    ):
        if column in frame:
            expectations.append(e.ExpectColumnValuesToBeBetween(column=column, min_value=HU_MIN, max_value=HU_MAX))
    return run_suite("lesion_features", frame, expectations, "lesion_id")


def centroid_inside(lesions: pd.DataFrame, scan: dict) -> np.ndarray:
    """Whether each lesion centroid (mm) lies inside the scan's voxel grid."""
    origin, matrix = index_to_physical(
        [scan["origin_x"], scan["origin_y"], scan["origin_z"]],
        [scan["spacing_x"], scan["spacing_y"], scan["spacing_z"]],
        [float(v) for v in scan["direction"].split(";")],
    )
    points = lesions[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(dtype=float)
    index = np.linalg.solve(matrix, (points - origin).T).T
    size = np.array([scan["size_x"], scan["size_y"], scan["size_z"]])
    return ((index >= -0.5) & (index <= size - 0.5)).all(axis=1)


def _declared_columns(schema: TableSchema, source: pd.DataFrame, frame: pd.DataFrame, e):
    """The table's columns exactly as base/schemas.py declares them, then the helper columns the suite added."""
    helpers = [c for c in frame.columns if c not in source.columns]
    return e.ExpectTableColumnsToMatchOrderedList(column_list=[*schema.names, *helpers])


def lesions_suite(lesions: pd.DataFrame, scan: dict, min_diameter_mm: float) -> SuiteResult:
    e = _gx()
    frame = lesions.assign(
        centroid_inside_image=centroid_inside(lesions, scan) if len(lesions) else [],
        included_below_minimum=lesions["included"] & (lesions["max_diameter_mm"] < min_diameter_mm),
    )
    expectations = [
        _declared_columns(LESIONS, lesions, frame, e),
        e.ExpectColumnValuesToBeBetween(column="volume_ml", min_value=0, strict_min=True),
        e.ExpectColumnValuesToBeBetween(column="max_diameter_mm", min_value=0, strict_min=True),
        e.ExpectColumnValuesToBeInSet(column="included_below_minimum", value_set=[False]),
        e.ExpectColumnValuesToBeInSet(column="centroid_inside_image", value_set=[True]),
        e.ExpectColumnValuesToBeUnique(column="lesion_id"),
    ]
    return run_suite("lesions", frame, expectations, "lesion_id")


def scans_suite(scans: pd.DataFrame) -> SuiteResult:
    e = _gx()
    valid = scans[scans["valid"]]
    # A duplicated scan_id is a bad row of scans.csv (every copy kept as invalid, reported by the row
    # check): ids must be unique among the valid rows, or one duplicate would block every scan.
    frame = scans.assign(
        excluded_without_reason=~scans["included"] & scans["exclusion_reason"].isna(),
        valid_scan_id=scans["scan_id"].where(scans["valid"]),
    )
    expectations = [
        _declared_columns(SCANS, scans, frame, e),
        e.ExpectColumnValuesToBeInSet(column="excluded_without_reason", value_set=[False]),
        e.ExpectColumnValuesToBeUnique(column="valid_scan_id"),
    ]
    if len(valid):
        for axis in "xyz":
            expectations.append(
                e.ExpectColumnValuesToBeBetween(column=f"spacing_{axis}", min_value=0, strict_min=True, mostly=1.0)
            )
    # Spacing is unknown (null) for rows that could not be read; GX skips nulls in range expectations.
    return run_suite("scans", frame, expectations, "scan_id")
