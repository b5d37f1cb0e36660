"""The per-scan assets (one partition per included scan): the full-decode check of its files,
then segmentation, lesions, radiomics features and DenseNet slices, in one step per scan.

Why one step: the work of a scan is a second or two, and Dagster's bookkeeping around a step (its
start and success events, loading its inputs, fetching their data versions, each event a write to
the event log) and opening the scan again in every step cost about as much again per step
(benchmarks/imaging_overhead.py: 2.5x the plain loop with one step per asset, on a loaded machine;
1.8x with this one step, on an idle one). So the five
assets are one `multi_asset` that reads the scan's files once and yields each asset's output in
turn: each keeps its own partition, page, materialisation, data version, code version and checks,
and `can_subset` keeps recomputing only what is stale (a changed radiomics setting re-extracts the
features from the stored lesions without re-segmenting). The work itself is `metorigin/imaging/
scan_steps.py`; this module only wires it.

`scan_integrity` comes first: ingest reads headers only (seconds for a cohort), so a truncated or
damaged file is found here, in the scan's own run, before any of its results is written; its
blocking check fails the step before the later assets are yielded, and the scan's earlier results
stay as they were. A scan's problem fails this scan's partition only, with the message that names
the scan and the fix.
"""

import base64
import hashlib
import json
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from metorigin.core.errors import ScanProcessingError
from metorigin.core.schemas import (
    LESION_SLICES,
    LESIONS,
    RADIOMICS_FEATURES,
    SCAN_INTEGRITY,
    SEGMENTATIONS,
)
from metorigin.core.store import Store
from metorigin.core.study import StudySettings
from metorigin.defs.common.checks import (
    INTEGRITY_CHECKS,
    LESIONS_CHECKS,
    integrity_checks,
    suite_check,
)
from metorigin.defs.common.metadata import table_metadata
from metorigin.defs.common.names import PER_SCAN_GROUP
from metorigin.defs.common.partitions import scan_partitions
from metorigin.defs.common.resources import CohortResource, SettingsResource, StoreResource
from metorigin.imaging import scan_steps
from metorigin.imaging.fingerprints import row_inputs
from metorigin.imaging.scan_steps import Scan
from metorigin.quality.suites import lesions_suite
from metorigin.runtime.placement import CPU_STEP, GPU_STEP

scan_inputs = dg.AssetSpec(
    "scan_inputs",
    partitions_def=scan_partitions,
    group_name="imaging",  # per scan, like the assets that read it (scan_assets.PER_SCAN_GROUP)
    deps=["scans"],
    kinds={"csv"},
    description="A scan's own inputs (its row of scans.csv, its image and mask files), observed at every "
    "ingest: a new data version for the scan whose row or files changed, and for no other scan.",
)


@contextmanager
def failing_only_this_scan():
    """Turn a scan's processing error into a Dagster failure of this partition's step, message intact."""
    try:
        yield
    except ScanProcessingError as exc:
        raise dg.Failure(description=str(exc), metadata={"scan_id": exc.scan_id, "step": exc.step}) from exc


def scan_row(store: Store, scan_id: str) -> dict:
    """The scan's row of the stored `scans` table. Read from the lake rather than as an input: the
    per-scan assets depend on their own `scan_inputs` partition, not on the whole table."""
    scans = store.read_lake("scans")
    match = scans[scans["scan_id"] == scan_id]
    if match.empty:
        raise ScanProcessingError(
            scan_id,
            "lookup",
            "no row of scans.csv describes this partition (added by hand in the UI's partition dialog, or its "
            "row removed since the last ingest)",
            "add the scan's row to scans.csv and materialise scans; otherwise the next ingest removes the partition",
        )
    row = match.iloc[0].to_dict()
    if not row["included"]:
        raise ScanProcessingError(
            scan_id,
            "lookup",
            f"the scan is not included ({row['exclusion_reason']})",
            "fix the row in scans.csv, or drop this partition",
        )
    return row


def _require_checked_files(scan: Scan) -> None:
    """The later assets read only files whose stored check passed as they are now: the same image
    and mask bytes, declared labels and checks (when `scan_integrity` runs in the same step it
    already stops them; this covers the later assets selected on their own, from the UI, the
    schedule or `metorigin run`, when the check is fresh or the files changed since ingest)."""
    record = _reusable(scan.store, scan.scan_id, scan_steps.file_fingerprints(scan, "inputs"))
    if record is not None and record["status"] == "passed":
        return
    if record is not None:
        problem, fix = f"its files failed their checks ({record['problems']})", "fix the files, then run again"
    else:
        problem = "its files are not checked as they are now (changed since their check, or never checked)"
        fix = "run scan_integrity for this scan (metorigin run does, after ingest finds the change)"
    raise ScanProcessingError(scan.scan_id, "inputs", problem, fix)


def _reusable(store: Store, scan_id: str, fingerprints: dict) -> dict | None:
    """The scan's stored check when its files, declared labels and the checks themselves are
    unchanged: a file is decoded once, not on every run."""
    path = store.lake_file(SCAN_INTEGRITY.name, scan_id)
    if not path.exists():
        return None
    stored = pd.read_parquet(path).iloc[0].to_dict()
    same = fingerprints["image_sha256"] is not None and all(stored[k] == v for k, v in fingerprints.items())
    return stored if same and stored["status"] in ("passed", "failed") else None


def _content_version(row: dict, fingerprints: dict) -> dg.DataVersion:
    """What the scan's later steps read, by content: its row (less where it sits) and its files'
    sha256. A re-copied file with the same bytes keeps the version, so nothing after this re-runs."""
    text = json.dumps([row_inputs(row), fingerprints], sort_keys=True, default=str)
    return dg.DataVersion(hashlib.sha256(text.encode()).hexdigest()[:24])


PROGRESS_EVERY = 50  # lesions between two progress lines of a scan's radiomics


def _out(schema, description: str, kinds=frozenset({"python", "parquet"})) -> dg.AssetOut:
    # Not required: a subset run yields only what is selected, a failed check stops the rest.
    return dg.AssetOut(is_required=False, metadata=table_metadata(schema), description=description, kinds=set(kinds))


OUTS = {
    "scan_integrity": _out(
        SCAN_INTEGRITY,
        "The scan's image and mask decoded in full and checked (complete data, finite voxels, values a CT "
        "in HU holds, the declared mask labels) before any of its results is written. A failure stops "
        "this scan's run and keeps its earlier results; the marts stop counting the scan, with the reason.",
    ),
    "segmentations": _out(
        SEGMENTATIONS, "Liver and lesion label map of the scan (artifacts/segmentations/), with volumes and liver HU."
    ),
    "lesions": _out(
        LESIONS, "One row per lesion (connected component); lesions under the minimum diameter kept, not included."
    ),
    "radiomics_features": _out(
        RADIOMICS_FEATURES,
        "pyradiomics features of every included lesion, long format, with version and settings hash.",
    ),
    "lesion_slices": _out(
        LESION_SLICES,
        "Index of the scan's DenseNet slices; the uint8 stack is artifacts/lesion_slices/<scan>.npz.",
        {"python", "numpy"},
    ),
}
UPSTREAM = {
    "scan_integrity": {scan_inputs.key},
    "segmentations": {dg.AssetKey("scan_integrity")},
    "lesions": {dg.AssetKey("segmentations")},
    "radiomics_features": {dg.AssetKey("lesions")},
    "lesion_slices": {dg.AssetKey("lesions")},
}


def scan_imaging_assets(study: StudySettings) -> dg.AssetsDefinition:
    """The per-scan imaging assets of this study: one step per scan, on a GPU worker of a Dask
    cluster when nnU-Net segments (reading the cohort's masks needs none)."""

    @dg.multi_asset(
        name="scan_imaging",
        outs=OUTS,
        deps=[scan_inputs],
        internal_asset_deps=UPSTREAM,
        check_specs=[*INTEGRITY_CHECKS, *LESIONS_CHECKS],
        partitions_def=scan_partitions,
        group_name=PER_SCAN_GROUP,
        can_subset=True,
        op_tags=GPU_STEP if study.segmentation.method == "nnunet" else CPU_STEP,
    )
    def scan_imaging(
        context: dg.AssetExecutionContext,
        cohort: CohortResource,
        store: StoreResource,
        settings: SettingsResource,
    ):
        """The scan's selected imaging assets, in order, from its files read once."""
        selected = {key.to_user_string() for key in context.selected_asset_keys}
        with failing_only_this_scan():
            _refuse_a_gap(context.partition_key, selected)
            row = scan_row(store.store(), context.partition_key)
        scan = Scan(row, Path(cohort.path), store.store(), settings.settings())
        if "scan_integrity" in selected:
            record = yield from _integrity(context, scan)
            if record["status"] != "passed":
                return  # the blocking check fails the step: nothing after it runs
        else:
            with failing_only_this_scan():
                _require_checked_files(scan)
        with failing_only_this_scan():
            yield from _after_the_check(context, scan, selected)

    return scan_imaging


def _refuse_a_gap(scan_id: str, selected: set[str]) -> None:
    """A new segmentation with features or slices but not the lesions between them would cut them
    from the old lesion map: refused (Dagster's own staleness never selects this; a hand-made
    selection in the UI or --select can)."""
    if "segmentations" in selected and selected & {"radiomics_features", "lesion_slices"} and "lesions" not in selected:
        raise ScanProcessingError(
            scan_id,
            "selection",
            "segmentations is selected with what reads lesions, but not lesions",
            "select lesions too",
        )


def _integrity(context: dg.AssetExecutionContext, scan: Scan):
    fingerprints = scan_steps.file_fingerprints(scan)
    record = _reusable(scan.store, scan.scan_id, fingerprints)
    if record is not None:
        context.log.info(f"{scan.scan_id}: files unchanged since {record['checked_at']}; their check is reused")
        record |= {"patient_id": scan.row["patient_id"]}  # the files may be the same, the row's patient not
    else:
        record = scan_steps.check_files(scan, fingerprints)
    yield dg.Output(
        scan_steps.integrity_rows(scan, record),
        output_name="scan_integrity",
        data_version=_content_version(scan.row, fingerprints),
        metadata={"status": record["status"], "n_problems": len((record["problems"] or "").splitlines())},
    )
    yield from integrity_checks(record, f"scan {scan.scan_id} (scans.csv line {scan.row['source_line']})")
    return record


def _after_the_check(context: dg.AssetExecutionContext, scan: Scan, selected: set[str]):
    """Segmentation, lesions, features and slices where selected; what a selected step reads from an
    unselected one comes from the store (the same files a previous run wrote)."""
    if "segmentations" in selected:
        table, labels = scan_steps.segment(scan)
        yield dg.Output(table, output_name="segmentations", metadata=_plain(table.iloc[0]))
    elif "lesions" in selected:
        labels = scan_steps.stored_labels(scan)
    if "lesions" in selected:
        lesions, lesion_map, picture = scan_steps.find_lesions(scan, labels)
        n_included = int(lesions["included"].sum())
        qc = f"![QC: {scan.scan_id}](data:image/png;base64,{base64.b64encode(picture.read_bytes()).decode()})"
        metadata = {
            "n_lesions": len(lesions),
            "n_included": n_included,
            "min_diameter_mm": scan.study.lesions.min_diameter_mm,
            "qc_image": dg.MetadataValue.md(qc),
        }
        yield dg.Output(
            lesions, output_name="lesions", metadata={**metadata, "qc_file": dg.MetadataValue.path(str(picture))}
        )
        result = suite_check(lesions_suite(lesions, scan.row, scan.study.lesions.min_diameter_mm), asset_key="lesions")
        yield result
        if not result.passed:
            return  # blocking: the features and slices of lesions that fail their checks are not computed
    elif selected & {"radiomics_features", "lesion_slices"}:
        lesions, lesion_map = scan_steps.stored_lesions(scan)
    if "radiomics_features" in selected:

        def progress(done: int, total: int) -> None:
            # Progress where a scan's extraction is long; a log line is an event (~10 ms) in every scan's run.
            if done % PROGRESS_EVERY == 0 and done < total:
                context.log.info(f"{scan.scan_id}: radiomics {done}/{total} lesions")

        features = scan_steps.radiomics_rows(scan, lesion_map, lesions, progress)
        metadata = {
            "n_lesions": int(features["lesion_id"].nunique()),
            "n_features": features["feature_name"].nunique(),
            "n_undefined_values": int(features["undefined_reason"].notna().sum()),
        }
        yield dg.Output(features, output_name="radiomics_features", metadata=metadata)
    if "lesion_slices" in selected:
        index = scan_steps.slice_rows(scan, lesion_map, lesions)
        metadata = {"n_slices": len(index), "n_lesions": index["lesion_id"].nunique()}
        yield dg.Output(index, output_name="lesion_slices", metadata=metadata)


def _plain(row: pd.Series) -> dict:
    """A row's scalar values as materialisation metadata."""
    values = {k: v.item() if isinstance(v, np.generic) else v for k, v in row.items()}
    return {k: v for k, v in values.items() if isinstance(v, (int, float, str, bool))}
