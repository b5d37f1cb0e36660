"""The per-scan assets (one partition per included scan): the full-decode check of its files,
then segmentation, lesions, radiomics features and DenseNet slices, each a thin shell over the
pure imaging steps in `metorigin/imaging/`.

`scan_integrity` runs first: ingest reads headers only (seconds for a cohort), so a truncated or
damaged file is found here, in the scan's own run, before any of its results is written; its
blocking check stops the rest of that run, and the scan's earlier results stay as they were.
Every later asset opens its scan the same way (`open_scan`): its row of the `scans` table, its
checked image, the study settings, and a failure that fails this scan's partition only, with the
message that names the scan and the fix. Each stamps its rows with the hash of the settings it read.
"""

import base64
import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import SimpleITK as sitk

from metorigin.core.errors import ScanProcessingError
from metorigin.core.files import atomic_path
from metorigin.core.schemas import (
    LESION_SLICES,
    LESIONS,
    RADIOMICS_FEATURES,
    SCAN_INTEGRITY,
    SEGMENTATIONS,
    TableSchema,
    conform,
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
from metorigin.imaging.cohort import IGNORE_ALL
from metorigin.imaging.fingerprints import row_inputs
from metorigin.imaging.integrity import CHECKS_VERSION, check_scan, fingerprint_or_none
from metorigin.imaging.io import read_image
from metorigin.imaging.lesions import LESION_MAPS, measure_lesions, read_lesion_map
from metorigin.imaging.nnunet import nnunet_segmentation
from metorigin.imaging.qc import QC_PICTURES, qc_png, qc_slice
from metorigin.imaging.radiomics import crop_lesion, extract_lesions, feature_names, long_table, pyradiomics_version
from metorigin.imaging.segmentation import as_image, parse_labels, provided_segmentation, summarise
from metorigin.imaging.slices import cut_lesion_slices, save_slices
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
            scan_id, "lookup", "the scan is not in the scans table", "add it to scans.csv and materialise scans"
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


@dataclass
class OpenScan:
    """What every per-scan asset starts from."""

    scan_id: str
    row: dict
    image: sitk.Image
    store: Store
    study: StudySettings

    def rows(self, frame: pd.DataFrame, schema: TableSchema, step: str) -> pd.DataFrame:
        """The step's frame stamped with its settings hash and conformed to the declared schema."""
        return conform(frame.assign(settings_hash=self.study.step_hash(step)), schema)


def open_scan(
    context: dg.AssetExecutionContext, cohort: CohortResource, store: StoreResource, settings: SettingsResource
) -> OpenScan:
    scan_id = context.partition_key
    with failing_only_this_scan():
        row = scan_row(store.store(), scan_id)
        _require_checked_files(store.store(), row, Path(cohort.path) / row["image"])
        image = read_image(Path(cohort.path) / row["image"])
    return OpenScan(scan_id, row, image, store.store(), settings.settings())


def _require_checked_files(store: Store, row: dict, image: Path) -> None:
    """A scan's steps read only an image that passed `scan_integrity` as it is now (in the same run,
    the blocking check already stops them; this covers a step selected on its own, e.g. from the
    UI, after the file changed or before it was checked)."""
    scan_id = row["scan_id"]
    path = store.lake_file(SCAN_INTEGRITY.name, scan_id)
    check = pd.read_parquet(path).iloc[0] if path.exists() else None
    if check is None or check["status"] != "passed" or check["image_sha256"] != fingerprint_or_none(image):
        failed = check is not None and check["status"] == "failed"
        raise ScanProcessingError(
            scan_id,
            "inputs",
            f"its files failed their checks ({check['problems']})"
            if failed
            else "its image is not checked as it is now",
            "run scan_integrity for this scan first (a process_scan run does it before the other steps)",
        )


def _declared_labels(row: dict) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...] | None]:
    """The mask labels the row declares: liver, lesion, and ignored (None: every undeclared one)."""
    ignore = _text(row["ignore_labels"])
    return (
        parse_labels(row["liver_labels"]),
        parse_labels(row["lesion_labels"]),
        (None if ignore == IGNORE_ALL else parse_labels(ignore)),
    )


def _text(value) -> str:
    """A text cell of the lake: an empty one reads back as None or NaN."""
    return value if isinstance(value, str) else ""


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


def _per_scan(schema: TableSchema, op_tags=CPU_STEP, **kwargs):
    return dg.asset(
        partitions_def=scan_partitions,
        group_name=PER_SCAN_GROUP,
        metadata=table_metadata(schema),
        op_tags=op_tags,
        **kwargs,
    )


@_per_scan(SCAN_INTEGRITY, kinds={"python", "parquet"}, check_specs=INTEGRITY_CHECKS, deps=[scan_inputs])
def scan_integrity(
    context: dg.AssetExecutionContext,
    cohort: CohortResource,
    store: StoreResource,
    settings: SettingsResource,
):
    """The scan's image and mask decoded in full and checked (complete data, finite voxels, values a
    CT in HU holds, the declared mask labels) before any of its results is written. A failure stops
    this scan's run and keeps its earlier results; the marts stop counting the scan, with the reason."""
    scan_id = context.partition_key
    study = settings.settings()
    with failing_only_this_scan():
        row = scan_row(store.store(), scan_id)
    cohort_dir = Path(cohort.path)
    image = cohort_dir / row["image"]
    # An nnU-Net run segments the image itself: the cohort's mask, if any, is not read.
    mask = cohort_dir / row["mask"] if _text(row["mask"]) and study.segmentation.method == "provided" else None
    liver, lesion, ignore = _declared_labels(row)
    fingerprints = {
        "image_sha256": fingerprint_or_none(image),  # None: the file is gone (the check says so)
        "mask_sha256": fingerprint_or_none(mask),
        "declared_labels": " | ".join(_text(row[c]) for c in ("liver_labels", "lesion_labels", "ignore_labels"))
        if mask
        else None,
        "checks_version": CHECKS_VERSION,
    }
    record = _reusable(store.store(), scan_id, fingerprints)
    if record is not None:
        context.log.info(f"{scan_id}: files unchanged since {record['checked_at']}; their check is reused")
        record |= {"patient_id": row["patient_id"]}  # the files may be the same, the row's patient not
    else:
        result = check_scan(image, mask, liver, lesion, ignore)
        record = {
            "scan_id": scan_id,
            "patient_id": row["patient_id"],
            "status": "passed" if result.passed else "failed",
            "problems": "\n".join(f"{p.problem}. Fix: {p.fix}" for p in result.problems) or None,
            "warnings": "\n".join(result.warnings) or None,
            **{
                k: result.facts.get(k) for k in ("labels_present", "min_hu", "max_hu", "n_nonfinite", "liver_median_hu")
            },
            **fingerprints,
            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
    table = conform(pd.DataFrame([record]).assign(settings_hash=study.step_hash("segmentation")), SCAN_INTEGRITY)
    yield dg.Output(
        table,
        data_version=_content_version(row, fingerprints),
        metadata={"status": record["status"], "n_problems": len((record["problems"] or "").splitlines())},
    )
    yield from integrity_checks(record, f"scan {scan_id} (scans.csv line {row['source_line']})")


# A GPU step: nnU-Net's, when the study segments with it (reading the cohort's masks is cheap either way).
@_per_scan(SEGMENTATIONS, op_tags=GPU_STEP, kinds={"python", "parquet"}, deps=[scan_integrity])
def segmentations(
    context: dg.AssetExecutionContext,
    cohort: CohortResource,
    store: StoreResource,
    settings: SettingsResource,
) -> pd.DataFrame:
    """Liver and lesion label map of the scan (artifacts/segmentations/), with volumes and liver HU."""
    scan = open_scan(context, cohort, store, settings)
    config = scan.study.segmentation
    with failing_only_this_scan():
        if config.method == "nnunet":
            result = nnunet_segmentation(
                scan.image, Path(config.nnunet_model_dir), config.nnunet_folds, config.nnunet_checkpoint, scan.scan_id
            )
        elif not _text(scan.row["mask"]):
            raise ScanProcessingError(
                scan.scan_id,
                "segmentation",
                "scans.csv gives no mask for this scan",
                "add its mask, or segment with nnU-Net (metorigin run --nnunet-model DIR)",
            )
        else:
            result = provided_segmentation(
                Path(cohort.path) / scan.row["mask"],
                scan.image,
                parse_labels(scan.row["liver_labels"]),
                parse_labels(scan.row["lesion_labels"]),
                scan.scan_id,
            )
    path = scan.store.write_image(result.labels, "segmentations", f"{scan.scan_id}.nii.gz")
    record = {
        "scan_id": scan.scan_id,
        "patient_id": scan.row["patient_id"],
        "method": result.method,
        "model_id": result.model_id,
        "resampled": result.resampled,
        "label_map": scan.store.relative(path),
        **summarise(scan.image, result.labels),
    }
    context.add_output_metadata({k: v for k, v in record.items() if isinstance(v, (int, float, str, bool))})
    return scan.rows(pd.DataFrame([record]), SEGMENTATIONS, "segmentation")


@_per_scan(LESIONS, kinds={"python", "parquet"}, check_specs=LESIONS_CHECKS)
def lesions(
    context: dg.AssetExecutionContext,
    cohort: CohortResource,
    store: StoreResource,
    settings: SettingsResource,
    segmentations: pd.DataFrame,
):
    """One row per lesion (connected component); lesions under the minimum diameter kept, not included."""
    scan = open_scan(context, cohort, store, settings)
    config = scan.study.lesions
    labels = sitk.ReadImage(str(scan.store.root / segmentations.iloc[0]["label_map"]))
    table, lesion_map = measure_lesions(
        scan.image, labels, scan.scan_id, scan.row["patient_id"], config.connectivity, config.min_diameter_mm
    )
    scan.store.write_image(as_image(lesion_map, scan.image), LESION_MAPS, f"{scan.scan_id}.nii.gz")
    table = scan.rows(table, LESIONS, "lesions")
    n_included = int(table["included"].sum())
    context.log.info(f"{scan.scan_id}: {len(table)} lesions, {n_included} included (>= {config.min_diameter_mm:g} mm)")
    picture = _qc_picture(scan, labels, lesion_map, table)
    qc = f"![QC: {scan.scan_id}](data:image/png;base64,{base64.b64encode(picture.read_bytes()).decode()})"
    metadata = {"n_lesions": len(table), "n_included": n_included, "qc_image": dg.MetadataValue.md(qc)}
    yield dg.Output(table, metadata={**metadata, "qc_file": dg.MetadataValue.path(str(picture))})
    yield suite_check(lesions_suite(table, scan.row, config.min_diameter_mm), asset_key="lesions")


def _qc_picture(scan: OpenScan, labels: sitk.Image, lesion_map, table: pd.DataFrame) -> Path:
    """artifacts/qc/<scan>.png: the slice through the largest lesion with the liver and lesion
    contours, for the asset's page and the report's QC gallery."""
    z, what = qc_slice(labels, lesion_map, table)
    window = scan.study.slices
    picture = qc_png(scan.image, labels, z, what, window.window_width, window.window_level)
    path = scan.store.artifact_path(QC_PICTURES, f"{scan.scan_id}.png")
    with atomic_path(path) as tmp:
        tmp.write_bytes(picture)
    return path


@_per_scan(RADIOMICS_FEATURES, kinds={"python", "parquet"})
def radiomics_features(
    context: dg.AssetExecutionContext,
    cohort: CohortResource,
    store: StoreResource,
    settings: SettingsResource,
    lesions: pd.DataFrame,
) -> pd.DataFrame:
    """pyradiomics features of every included lesion, long format, with version and settings hash."""
    scan = open_scan(context, cohort, store, settings)
    config = scan.study.radiomics
    lesion_map = read_lesion_map(scan.store, scan.scan_id)
    chosen = lesions[lesions["included"]]
    crops = [
        crop_lesion(scan.image, lesion_map, lesion, config.crop_margin_voxels) for lesion in chosen.to_dict("records")
    ]

    def progress(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            context.log.info(f"{scan.scan_id}: radiomics {done}/{total} lesions")

    results = extract_lesions(crops, config.workers, Path(config.params_file), progress=progress)
    table = long_table(chosen, results, list(feature_names(Path(config.params_file))), pyradiomics_version())
    table = scan.rows(table, RADIOMICS_FEATURES, "radiomics")
    context.add_output_metadata(
        {
            "n_lesions": len(chosen),
            "n_features": table["feature_name"].nunique(),
            "n_undefined_values": int(table["undefined_reason"].notna().sum()),
        }
    )
    return table


@_per_scan(LESION_SLICES, kinds={"python", "numpy"})
def lesion_slices(
    context: dg.AssetExecutionContext,
    cohort: CohortResource,
    store: StoreResource,
    settings: SettingsResource,
    lesions: pd.DataFrame,
) -> pd.DataFrame:
    """Index of the scan's DenseNet slices; the uint8 stack is artifacts/lesion_slices/<scan>.npz."""
    scan = open_scan(context, cohort, store, settings)
    lesion_map = read_lesion_map(scan.store, scan.scan_id)
    stack, index = cut_lesion_slices(scan.image, lesion_map, lesions, scan.study.slices)
    path = scan.store.artifact_path("lesion_slices", f"{scan.scan_id}.npz")
    save_slices(path, stack)
    index["slices_file"] = scan.store.relative(path)
    context.add_output_metadata({"n_slices": len(index), "n_lesions": index["lesion_id"].nunique()})
    return scan.rows(index, LESION_SLICES, "slices")
