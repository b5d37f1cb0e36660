"""One scan's steps with each of its files read once: the full-decode check, the segmentation, the
lesions and their QC picture, the radiomics features and the DenseNet slices.

A `Scan` carries the decoded image (and the cohort's mask) from the check to every later step, so
a scan is decompressed once per run rather than once per step. Each step writes its artefacts into
the store and returns its lake rows, conformed to the declared schema and stamped with the hash of
the settings it read. The per-scan assets (defs/imaging/assets.py) are one Dagster step per scan
over these functions, and benchmarks/imaging_overhead.py calls the same functions in a plain loop:
what the platform costs around them is that benchmark's figure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
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
from metorigin.imaging.cohort import IGNORE_ALL
from metorigin.imaging.integrity import CHECKS_VERSION, check_scan, fingerprint_or_none
from metorigin.imaging.io import READ_LIMIT_FIX, ReadTimedOut, read_image
from metorigin.imaging.lesions import LESION_MAPS, measure_lesions, read_lesion_map
from metorigin.imaging.nnunet import nnunet_segmentation
from metorigin.imaging.qc import QC_PICTURES, qc_png, qc_slice
from metorigin.imaging.radiomics import crop_lesion, extract_lesions, feature_names, long_table, pyradiomics_version
from metorigin.imaging.segmentation import (
    SegmentationResult,
    as_image,
    labels_from_mask,
    parse_labels,
    read_mask,
    summarise,
)
from metorigin.imaging.slices import cut_lesion_slices, save_slices

SEGMENTATION_MAPS = "segmentations"  # artefact folder of the per-scan label maps
SLICE_STACKS = "lesion_slices"  # artefact folder of the per-scan DenseNet slice stacks


def text(value) -> str:
    """A text cell of the lake: an empty one reads back as None or NaN."""
    return value if isinstance(value, str) else ""


@dataclass
class Scan:
    """One scan as its steps read it: its stored row, its files, the study, and the images once
    decoded (by the check, or on first use)."""

    row: dict
    cohort: Path
    store: Store
    study: StudySettings
    _image: sitk.Image | None = field(default=None, repr=False)
    _mask: sitk.Image | None = field(default=None, repr=False)

    @property
    def scan_id(self) -> str:
        return self.row["scan_id"]

    @property
    def image_path(self) -> Path:
        return self.cohort / self.row["image"]

    @property
    def mask_path(self) -> Path | None:
        """The cohort's mask, when the study reads it: an nnU-Net study segments the image itself."""
        provided = self.study.segmentation.method == "provided"
        return self.cohort / self.row["mask"] if provided and text(self.row["mask"]) else None

    @property
    def image(self) -> sitk.Image:
        if self._image is None:
            self._image = read_image(self.image_path)
        return self._image

    def rows(self, frame: pd.DataFrame, schema: TableSchema, step: str) -> pd.DataFrame:
        """The step's frame stamped with its settings hash and conformed to the declared schema."""
        return conform(frame.assign(settings_hash=self.study.step_hash(step)), schema)


# ---------------------------------------------------------------------------------------------
# scan_integrity


def file_fingerprints(scan: Scan, step: str = "scan_integrity") -> dict:
    """What a stored check is valid for: the files' sha256, the declared labels, the checks' version
    (`step`: the one reading them, named when a read is given up)."""
    mask, limit = scan.mask_path, scan.study.cluster.read_timeout_s
    try:
        image_sha256, mask_sha256 = fingerprint_or_none(scan.image_path, limit), fingerprint_or_none(mask, limit)
    except ReadTimedOut as error:
        raise ScanProcessingError(scan.scan_id, step, str(error), READ_LIMIT_FIX) from None
    return {
        "image_sha256": image_sha256,  # None: the file is gone (the check says so)
        "mask_sha256": mask_sha256,
        "declared_labels": " | ".join(text(scan.row[c]) for c in ("liver_labels", "lesion_labels", "ignore_labels"))
        if mask
        else None,
        "checks_version": CHECKS_VERSION,
    }


def check_files(scan: Scan, fingerprints: dict) -> dict:
    """The scan's integrity record from a full decode of its files; the decoded files stay with the
    scan for the steps after it."""
    ignore = text(scan.row["ignore_labels"])
    result = check_scan(
        scan.image_path,
        scan.mask_path,
        parse_labels(scan.row["liver_labels"]),
        parse_labels(scan.row["lesion_labels"]),
        None if ignore == IGNORE_ALL else parse_labels(ignore),
    )
    if result.passed:
        scan._image, scan._mask = result.image.image, result.mask.image if result.mask else None
    return {
        "scan_id": scan.scan_id,
        "patient_id": scan.row["patient_id"],
        "status": "passed" if result.passed else "failed",
        "problems": "\n".join(f"{p.problem}. Fix: {p.fix}" for p in result.problems) or None,
        "warnings": "\n".join(result.warnings) or None,
        **{k: result.facts.get(k) for k in ("labels_present", "min_hu", "max_hu", "n_nonfinite", "liver_median_hu")},
        **fingerprints,
        "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def integrity_rows(scan: Scan, record: dict) -> pd.DataFrame:
    return scan.rows(pd.DataFrame([record]), SCAN_INTEGRITY, "segmentation")


# ---------------------------------------------------------------------------------------------
# segmentations


def segment(scan: Scan) -> tuple[pd.DataFrame, sitk.Image]:
    """The scan's label map (the cohort's mask on the image grid, or nnU-Net's), written to
    artifacts/segmentations/, and its row with volumes and liver HU."""
    config = scan.study.segmentation
    if config.method == "nnunet":
        result = nnunet_segmentation(
            scan.image, Path(config.nnunet_model_dir), config.nnunet_folds, config.nnunet_checkpoint, scan.scan_id
        )
    elif scan.mask_path is None:
        raise ScanProcessingError(
            scan.scan_id,
            "segmentation",
            "scans.csv gives no mask for this scan",
            "add its mask, or segment with nnU-Net (metorigin run --nnunet-model DIR)",
        )
    else:
        mask = scan._mask if scan._mask is not None else read_mask(scan.mask_path, scan.scan_id)
        result = labels_from_mask(
            mask,
            scan.image,
            parse_labels(scan.row["liver_labels"]),
            parse_labels(scan.row["lesion_labels"]),
            scan.scan_id,
        )
    path = scan.store.write_image(result.labels, SEGMENTATION_MAPS, f"{scan.scan_id}.nii.gz")
    return scan.rows(segmentation_frame(scan, result, path), SEGMENTATIONS, "segmentation"), result.labels


def segmentation_frame(scan: Scan, result: SegmentationResult, path: Path) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "scan_id": scan.scan_id,
                "patient_id": scan.row["patient_id"],
                "method": result.method,
                "model_id": result.model_id,
                "resampled": result.resampled,
                "label_map": scan.store.relative(path),
                **summarise(scan.image, result.labels),
            }
        ]
    )


def stored_labels(scan: Scan) -> sitk.Image:
    """The label map a previous run stored (a re-run of the later steps alone)."""
    row = scan.store.read_lake("segmentations", [scan.scan_id]).iloc[0]
    return sitk.ReadImage(str(scan.store.root / row["label_map"]))


# ---------------------------------------------------------------------------------------------
# lesions


def find_lesions(scan: Scan, labels: sitk.Image) -> tuple[pd.DataFrame, np.ndarray, Path]:
    """One row per lesion (connected component; under the minimum diameter kept, not included), the
    lesion map (written to artifacts/lesions/) and the QC picture (artifacts/qc/<scan>.png: the slice
    through the largest lesion with the liver and lesion contours, for the asset's page and the
    report's QC gallery)."""
    config = scan.study.lesions
    table, lesion_map = measure_lesions(
        scan.image, labels, scan.scan_id, scan.row["patient_id"], config.connectivity, config.min_diameter_mm
    )
    scan.store.write_image(as_image(lesion_map, scan.image), LESION_MAPS, f"{scan.scan_id}.nii.gz")
    table = scan.rows(table, LESIONS, "lesions")
    z, what = qc_slice(labels, lesion_map, table)
    window = scan.study.slices
    picture = scan.store.artifact_path(QC_PICTURES, f"{scan.scan_id}.png")
    with atomic_path(picture) as tmp:
        tmp.write_bytes(qc_png(scan.image, labels, z, what, window.window_width, window.window_level))
    return table, lesion_map, picture


def stored_lesions(scan: Scan) -> tuple[pd.DataFrame, np.ndarray]:
    """The lesions table and map a previous run stored (a changed radiomics or slice setting)."""
    return scan.store.read_lake("lesions", [scan.scan_id]), read_lesion_map(scan.store, scan.scan_id)


# ---------------------------------------------------------------------------------------------
# radiomics_features, lesion_slices


def radiomics_rows(
    scan: Scan, lesion_map: np.ndarray, lesions: pd.DataFrame, progress: Callable[[int, int], None] | None = None
) -> pd.DataFrame:
    """pyradiomics features of every included lesion on its bounding-box crop, long format."""
    config = scan.study.radiomics
    chosen = lesions[lesions["included"]]
    crops = [crop_lesion(scan.image, lesion_map, les, config.crop_margin_voxels) for les in chosen.to_dict("records")]
    results = extract_lesions(crops, config.workers, Path(config.params_file), progress=progress)
    table = long_table(chosen, results, list(feature_names(Path(config.params_file))), pyradiomics_version())
    return scan.rows(table, RADIOMICS_FEATURES, "radiomics")


def slice_rows(scan: Scan, lesion_map: np.ndarray, lesions: pd.DataFrame) -> pd.DataFrame:
    """The index of the scan's DenseNet slices; the uint8 stack goes to artifacts/lesion_slices/<scan>.npz."""
    stack, index = cut_lesion_slices(scan.image, lesion_map, lesions, scan.study.slices)
    path = scan.store.artifact_path(SLICE_STACKS, f"{scan.scan_id}.npz")
    save_slices(path, stack)
    index["slices_file"] = scan.store.relative(path)
    return scan.rows(index, LESION_SLICES, "slices")
