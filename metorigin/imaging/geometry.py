"""Where a voxel grid lies in physical space, and whether two grids cover the same space.

A mask is allowed on another grid than its image (a different axis order, a flip, another voxel
size) as long as both describe the same physical box: then nearest-neighbour resampling aligns
them exactly. Anything else (a shifted origin, a cropped volume) would silently misplace lesions,
so it must be refused.
"""

from __future__ import annotations

import itertools

import numpy as np

from metorigin.core.geometry import index_to_physical
from metorigin.imaging.io import ImageInfo


def _matrix(info: ImageInfo) -> np.ndarray:
    return index_to_physical(info.origin, info.spacing, info.direction)[1]


def physical_bounds(info: ImageInfo) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned physical box spanned by the grid's voxel *edges* (not centres), in mm."""
    matrix = _matrix(info)
    origin = np.asarray(info.origin, dtype=float)
    corners = np.array(
        [
            [-0.5 if c == 0 else n - 0.5 for c, n in zip(choice, info.size)]
            for choice in itertools.product((0, 1), repeat=3)
        ]
    )
    points = origin + corners @ matrix.T
    return points.min(axis=0), points.max(axis=0)


def voxel_extent(info: ImageInfo) -> np.ndarray:
    """Size of one voxel along each physical axis (x, y, z), whatever the grid's axis order."""
    return np.abs(_matrix(info)).max(axis=1)


def coverage_mismatch(image: ImageInfo, mask: ImageInfo) -> str | None:
    """Why the mask grid does not cover the image's physical space, or None when it does.

    Tolerance is half a voxel of the coarser grid along each physical axis: rounding of origins
    by scanners and converters stays inside it, a shift by a whole slice does not.
    """
    img_lo, img_hi = physical_bounds(image)
    msk_lo, msk_hi = physical_bounds(mask)
    tolerance = 0.5 * np.maximum(voxel_extent(image), voxel_extent(mask)) + 1e-6
    off = np.maximum(np.abs(img_lo - msk_lo), np.abs(img_hi - msk_hi))
    bad = [axis for axis, o, t in zip("xyz", off, tolerance) if o > t]
    if not bad:
        return None
    fmt = lambda v: "[" + ", ".join(f"{x:.1f}" for x in v) + "]"  # noqa: E731
    return (
        f"the mask spans {fmt(msk_lo)} to {fmt(msk_hi)} mm but the image spans {fmt(img_lo)} to "
        f"{fmt(img_hi)} mm (off by up to {off.max():.1f} mm along {', '.join(bad)})"
    )


def slice_axis_tilt_deg(info: ImageInfo) -> float:
    """Angle between the grid's slice axis and the patient's head-foot axis; 0 for axial scans."""
    direction = np.asarray(info.direction, dtype=float).reshape(3, 3)
    slice_axis = direction[:, 2] / np.linalg.norm(direction[:, 2])
    return float(np.degrees(np.arccos(min(1.0, abs(slice_axis[2])))))


def grid_problem(spacing, direction) -> str | None:
    """Why a header's grid cannot place voxels in space, or None when it can.

    Zero or negative spacing gives zero or negative volumes and diameters; direction cosines that
    are not orthonormal shear or scale every physical measure. Both come from broken converters,
    and both would reach every number of the scan, so the scan is refused, not repaired.
    """
    spacing = np.asarray(spacing, dtype=float)
    if not (np.isfinite(spacing).all() and (spacing > 0).all()):
        return f"the voxel spacing {', '.join(f'{v:g}' for v in spacing)} mm is not positive"
    cosines = np.asarray(direction, dtype=float).reshape(3, 3)
    if not np.isfinite(cosines).all() or not np.allclose(cosines @ cosines.T, np.eye(3), atol=1e-3):
        return "the direction cosines are not orthonormal (the axes are not perpendicular unit vectors)"
    return None
