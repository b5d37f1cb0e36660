"""Liver and lesion segmentation of one scan: the cohort's own label map, or an nnU-Net v2 model.

Whatever the source, the result is one label map on the image grid with the project's labels
(0 background, 1 liver parenchyma, 2 lesion), so every later step reads one convention.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from metorigin.core.errors import ScanProcessingError
from metorigin.imaging.geometry import coverage_mismatch
from metorigin.imaging.io import ImageInfo

LIVER, LESION = 1, 2


@dataclass(frozen=True)
class SegmentationResult:
    labels: sitk.Image  # uint8, on the image grid, project labels
    method: str  # "provided" or "nnunet"
    model_id: str | None  # identity of the model that made it, None for provided masks
    resampled: bool  # whether the source label map had to be resampled onto the image grid


def parse_labels(text: str | None) -> tuple[int, ...]:
    return tuple(int(v) for v in str(text or "").split(";") if v.strip())


def _info(image: sitk.Image) -> ImageInfo:
    return ImageInfo(
        size=image.GetSize(),
        spacing=image.GetSpacing(),
        origin=image.GetOrigin(),
        direction=image.GetDirection(),
        pixel_type=image.GetPixelIDTypeAsString(),
    )


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


def align_to_image(mask: sitk.Image, image: sitk.Image, scan_id: str) -> tuple[sitk.Image, bool]:
    """The mask on the image grid: as is, or resampled nearest-neighbour when it covers the same space."""
    if same_grid(mask, image):
        return mask, False
    mismatch = coverage_mismatch(_info(image), _info(mask))
    if mismatch:
        raise ScanProcessingError(
            scan_id,
            "segmentation",
            mismatch,
            "export the mask on the image's grid, or on a grid covering the same physical space",
        )
    return sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID()), True


def to_project_labels(
    values: np.ndarray, liver_labels: tuple[int, ...], lesion_labels: tuple[int, ...], scan_id: str
) -> np.ndarray:
    """Map the source's label values to 1 (liver) and 2 (lesion); every other value is background.

    A provided mask reaches this point only with labels the cohort declares or ignores (the scan's
    full-decode check, `metorigin/imaging/integrity.py`, refuses the others): an organ segmentation
    (e.g. TotalSegmentator) labels a dozen organs, of which only the liver matters here. A liver
    label that is absent (an nnU-Net prediction without liver, a mask declared wrong) is an error
    that lists what is there.
    """
    present = np.unique(values)
    if not np.isin(liver_labels, present).any():
        shown = ", ".join(f"{v:g}" for v in present[present > 0][:20]) or "none"
        raise ScanProcessingError(
            scan_id,
            "segmentation",
            f"the mask holds no liver label {'/'.join(map(str, liver_labels))} (label values present: {shown})",
            "set liver_labels (and lesion_labels) in scans.csv to the values your masks use",
        )
    out = np.zeros(values.shape, dtype=np.uint8)
    out[np.isin(values, liver_labels)] = LIVER
    if lesion_labels:
        out[np.isin(values, lesion_labels)] = LESION
    return out


def provided_segmentation(
    mask_path: Path, image: sitk.Image, liver_labels, lesion_labels, scan_id: str
) -> SegmentationResult:
    return labels_from_mask(read_mask(mask_path, scan_id), image, liver_labels, lesion_labels, scan_id)


def read_mask(mask_path: Path, scan_id: str) -> sitk.Image:
    try:
        return sitk.ReadImage(str(mask_path))
    except RuntimeError as exc:
        raise ScanProcessingError(
            scan_id,
            "segmentation",
            f"the mask {Path(mask_path).name} cannot be read ({exc})",
            "re-export the mask as NIfTI, NRRD or MHA",
        ) from None


def labels_from_mask(
    mask: sitk.Image, image: sitk.Image, liver_labels, lesion_labels, scan_id: str
) -> SegmentationResult:
    """The cohort's mask on the image grid, with the project's labels."""
    aligned, resampled = align_to_image(mask, image, scan_id)
    labels = to_project_labels(sitk.GetArrayViewFromImage(aligned), liver_labels, lesion_labels, scan_id)
    return SegmentationResult(labels=as_image(labels, image), method="provided", model_id=None, resampled=resampled)


def as_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def summarise(image: sitk.Image, labels: sitk.Image) -> dict:
    """Volumes and HU that tumour burden and Table 1 are computed from."""
    hu = sitk.GetArrayViewFromImage(image)
    lab = sitk.GetArrayViewFromImage(labels)
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    parenchyma = lab == LIVER
    lesion = lab == LESION
    return {
        "liver_volume_ml": float((parenchyma.sum() + lesion.sum()) * voxel_ml),
        "lesion_volume_ml": float(lesion.sum() * voxel_ml),
        "liver_parenchyma_mean_hu": float(hu[parenchyma].mean()) if parenchyma.any() else float("nan"),
        "voxel_volume_ml": voxel_ml,
    }
