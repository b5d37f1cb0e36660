"""Where a voxel index lies in physical space: the one index-to-mm map every step shares."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def index_to_physical(
    origin: Sequence[float], spacing: Sequence[float], direction: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Origin and matrix M of the linear map from a continuous (x, y, z) index to mm:
    point = origin + M @ index, where M's columns are the grid axes scaled by their spacing."""
    matrix = np.asarray(direction, dtype=float).reshape(3, 3) @ np.diag(np.asarray(spacing, dtype=float))
    return np.asarray(origin, dtype=float), matrix
