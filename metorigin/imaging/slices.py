"""DenseNet input: every axial slice through every included lesion, masked, windowed and cropped.

As in the study, the surroundings are blacked out with the lesion mask, intensities windowed to
W330/L10, and each slice cropped to one square per lesion (the same square for all its slices, so
the lesion keeps its scale from slice to slice) that holds the whole lesion and a border, then
resized to 224x224. The study's square scales every lesion to fill the image; `field_mm` crops a
fixed physical field instead, so lesion size stays visible to the network. Slices are stored as
uint8 (1.3 HU per grey level) in one compressed array file per scan, with an index table that
says which row is which lesion and slice.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from metorigin.core.files import atomic_path
from metorigin.core.schemas import LESION_SLICES
from metorigin.core.study import SliceSettings


def window(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """HU to [0, 1] through a display window."""
    return np.clip((hu - (level - width / 2)) / width, 0.0, 1.0)


def crop_description(settings: SliceSettings, image_size: int) -> str:
    """What the DenseNet's input shows (at its `image_size`), for its model card."""
    if settings.field_mm is None:
        return f"{image_size}x{image_size} lesion slices, each lesion scaled to fill the image"
    return f"{image_size}x{image_size} lesion slices, a fixed {settings.field_mm:g} mm field around each lesion"


def lesion_square(lesion: dict, settings: SliceSettings, pixel_mm: float) -> tuple[int, int, int]:
    """Top row, left column and side (pixels) of the lesion's square crop; may extend past the image."""
    height = lesion["bbox_y1"] - lesion["bbox_y0"] + 1
    width = lesion["bbox_x1"] - lesion["bbox_x0"] + 1
    if settings.field_mm is not None:  # CT pixels are square in-plane: one spacing gives the side
        side = max(1, int(round(settings.field_mm / pixel_mm)))
    else:
        side = max(height, width)
        side += 2 * max(settings.min_border_px, int(round(settings.border_fraction * side)))
    center_y = (lesion["bbox_y0"] + lesion["bbox_y1"]) / 2
    center_x = (lesion["bbox_x0"] + lesion["bbox_x1"]) / 2
    return int(np.floor(center_y - (side - 1) / 2)), int(np.floor(center_x - (side - 1) / 2)), side


def _padded_crop(plane: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    """A side x side crop; parts outside the image are black (0), like the masked surroundings."""
    out = np.zeros((side, side), dtype=plane.dtype)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, plane.shape[0]), min(left + side, plane.shape[1])
    out[y0 - top : y1 - top, x0 - left : x1 - left] = plane[y0:y1, x0:x1]
    return out


def cut_lesion_slices(
    image: sitk.Image, lesion_map: np.ndarray, lesions: pd.DataFrame, settings: SliceSettings = SliceSettings()
) -> tuple[np.ndarray, pd.DataFrame]:
    """uint8 slices (n, size, size) and one index row per slice, for the included lesions."""
    hu = sitk.GetArrayViewFromImage(image)
    pixel_mm2 = image.GetSpacing()[0] * image.GetSpacing()[1]
    arrays, rows = [], []
    for lesion in lesions[lesions["included"]].to_dict("records"):
        top, left, side = lesion_square(lesion, settings, image.GetSpacing()[0])
        for z in range(lesion["bbox_z0"], lesion["bbox_z1"] + 1):
            inside = lesion_map[z] == lesion["lesion_number"]
            area = int(inside.sum())
            if not area:
                continue
            plane = np.where(
                inside, window(hu[z].astype(np.float32), settings.window_width, settings.window_level), 0.0
            )
            crop = _padded_crop(plane, top, left, side)
            resized = ndimage.zoom(crop, settings.size / side, order=1, grid_mode=True, mode="grid-constant")
            arrays.append(np.clip(np.rint(resized * 255), 0, 255).astype(np.uint8))
            rows.append(
                {
                    "lesion_id": lesion["lesion_id"],
                    "scan_id": lesion["scan_id"],
                    "patient_id": lesion["patient_id"],
                    "slice_index": z,
                    "array_row": len(rows),
                    "lesion_area_px": area,
                    "lesion_area_mm2": area * pixel_mm2,
                    "crop_side_mm": side * image.GetSpacing()[0],
                }
            )
    stack = np.stack(arrays) if arrays else np.zeros((0, settings.size, settings.size), dtype=np.uint8)
    return stack, pd.DataFrame(rows, columns=[c for c in LESION_SLICES.computed if c != "slices_file"])


def save_slices(path: Path, slices: np.ndarray) -> None:
    """Atomic write of one scan's slice stack (compressed: the blacked-out surroundings are mostly zeros)."""
    with atomic_path(path, keep_suffix=True) as tmp:
        np.savez_compressed(tmp, slices=slices)


def load_slices(path: Path) -> np.ndarray:
    with np.load(path) as data:
        return data["slices"]
