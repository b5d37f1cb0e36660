"""Lesions of one scan: the lesion mask split into 3-D connected components and measured.

Lesion ids are `<scan_id>-L<nnn>`, numbered in raster order of each component's first voxel
(slice, then row, then column of the image grid): the same mask always gives the same ids.
"""

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist

from metorigin.core.geometry import index_to_physical
from metorigin.core.schemas import LESIONS
from metorigin.core.store import Store
from metorigin.imaging.segmentation import LESION

CONNECTIVITY = {"face": 1, "edge": 2, "vertex": 3}
LESION_MAPS = "lesions"  # artefact folder of the per-scan lesion maps


def label_components(lesion_mask: np.ndarray, connectivity: str = "face") -> tuple[np.ndarray, int]:
    """Connected components numbered 1..n in raster order of their first voxel."""
    if connectivity not in CONNECTIVITY:
        raise ValueError(f"unknown connectivity {connectivity!r}; use one of {', '.join(CONNECTIVITY)}")
    structure = ndimage.generate_binary_structure(3, CONNECTIVITY[connectivity])
    components, n = ndimage.label(lesion_mask, structure=structure)
    return components.astype(np.uint16 if n < 65535 else np.uint32), n


_FACE_CENTRES = np.array([[d if axis == k else 0.0 for k in range(3)] for axis in range(3) for d in (-0.5, 0.5)])


def feret_diameter_mm(voxels_zyx: np.ndarray, matrix: np.ndarray) -> float:
    """Largest distance across the lesion, between the centres of its outer voxel faces.

    Those points are where a marching-cubes mesh of the mask puts its vertices, so the value equals
    pyradiomics' `original_shape_Maximum3DDiameter` (tested), and a one-voxel lesion measures one
    voxel, not zero. Only surface voxels can hold the extremes, only hull vertices can be the ends.
    """
    xyz = voxels_zyx[:, ::-1].astype(np.float64)
    points = (xyz[:, None, :] + _FACE_CENTRES[None]).reshape(-1, 3) @ matrix.T
    if len(points) > 64:
        points = points[ConvexHull(points).vertices]
    return float(pdist(points).max())


def measure_lesions(
    image: sitk.Image,
    labels: sitk.Image,
    scan_id: str,
    patient_id: str,
    connectivity: str = "face",
    min_diameter_mm: float = 5.0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per lesion, and the lesion map (0 background, n = lesion number) on the image grid."""
    lab = sitk.GetArrayViewFromImage(labels)
    hu = sitk.GetArrayViewFromImage(image)
    components, n = label_components(lab == LESION, connectivity)
    origin, matrix = index_to_physical(image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    voxel_ml = float(abs(np.linalg.det(matrix))) / 1000.0
    rows = []
    for number, box in enumerate(ndimage.find_objects(components), start=1):
        local = components[box] == number
        offset = np.array([s.start for s in box])
        voxels = np.argwhere(local) + offset
        surface = local & ~ndimage.binary_erosion(local)
        diameter = feret_diameter_mm(np.argwhere(surface) + offset, matrix)
        centroid = origin + matrix @ voxels.mean(axis=0)[::-1]
        included = diameter >= min_diameter_mm
        rows.append(
            {
                "lesion_id": f"{scan_id}-L{number:03d}",
                "scan_id": scan_id,
                "patient_id": patient_id,
                "lesion_number": number,
                "voxel_count": len(voxels),
                "volume_ml": len(voxels) * voxel_ml,
                "max_diameter_mm": diameter,
                "centroid_x_mm": centroid[0],
                "centroid_y_mm": centroid[1],
                "centroid_z_mm": centroid[2],
                "bbox_x0": box[2].start,
                "bbox_x1": box[2].stop - 1,
                "bbox_y0": box[1].start,
                "bbox_y1": box[1].stop - 1,
                "bbox_z0": box[0].start,
                "bbox_z1": box[0].stop - 1,
                "mean_hu": float(hu[box][local].mean()),
                "included": bool(included),
                "exclusion_reason": None
                if included
                else f"largest diameter {diameter:.1f} mm is under {min_diameter_mm:g} mm",
            }
        )
    return pd.DataFrame(rows, columns=LESIONS.computed), components


def read_lesion_map(store: Store, scan_id: str) -> np.ndarray:
    """The scan's lesion map as written by the `lesions` asset (0 background, n = lesion number)."""
    return sitk.GetArrayFromImage(sitk.ReadImage(str(store.artifact_path(LESION_MAPS, f"{scan_id}.nii.gz"))))
