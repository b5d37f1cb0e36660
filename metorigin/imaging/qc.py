"""The scan's QC picture: the axial slice through its largest lesion, the liver and lesion contours
over the windowed CT. The first thing a radiologist checks before trusting any number is whether
the masks sit on the liver and its lesions; this puts that look on every scan's asset page and in
the report's gallery, at a few kilobytes a scan."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import SimpleITK as sitk
from matplotlib.figure import Figure

from metorigin.imaging.segmentation import LESION, LIVER
from metorigin.imaging.slices import window

QC_PICTURES = "qc"  # artefact folder: artifacts/qc/<scan>.png


def qc_slice(labels: sitk.Image, lesion_map: np.ndarray, lesion_table: pd.DataFrame) -> tuple[int, str]:
    """The axial index where the largest included lesion (by voxels; any lesion if none is
    included) is widest, or the slice with the most liver when the scan has no lesion; and what it
    shows. `lesion_map` holds each lesion's `lesion_number` (lesions.py)."""
    lesions = lesion_table.sort_values(["included", "voxel_count"], ascending=False)
    if len(lesions):
        largest = lesions.iloc[0]
        z = int(np.argmax((lesion_map == largest["lesion_number"]).sum(axis=(1, 2))))
        return z, f"{largest['lesion_id']} ({largest['max_diameter_mm']:.0f} mm), the largest lesion"
    liver = sitk.GetArrayViewFromImage(labels) > 0
    return int(np.argmax(liver.sum(axis=(1, 2)))), "no lesion: the slice with the most liver"


def qc_png(image: sitk.Image, labels: sitk.Image, z: int, title: str, width: float, level: float) -> bytes:
    """The windowed CT slice `z` with the liver (green) and lesion (red) contours, as a small PNG,
    drawn at the voxels' true aspect ratio."""
    hu = sitk.GetArrayViewFromImage(image)[z].astype(np.float32)
    lab = sitk.GetArrayViewFromImage(labels)[z]
    sx, sy = image.GetSpacing()[:2]
    fig = Figure(figsize=(3.0, 3.25))  # 240 x 260 px: a few tens of KB, on every partition's page
    ax = fig.add_axes((0, 0, 1, 0.9))
    ax.imshow(window(hu, width, level), cmap="gray", vmin=0, vmax=1, aspect=sy / sx)
    for mask, colour in (((lab == LIVER) | (lab == LESION), "#2ca02c"), (lab == LESION, "#d62728")):
        if mask.any():
            ax.contour(mask.astype(np.uint8), levels=[0.5], colors=colour, linewidths=0.8)
    ax.axis("off")
    fig.suptitle(f"slice {z}: {title}", fontsize=7, y=0.97)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=80)
    return out.getvalue()
