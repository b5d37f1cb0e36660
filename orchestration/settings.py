"""Study settings and the two named profiles.

`paper` reproduces the study's protocol; `quick` runs the same steps with smaller training
budgets so the whole study fits a 2-core laptop. Every number the study fixes lives here, so a
group with another protocol changes a setting, not the code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

DEFAULT_SEED = 20240613


@dataclass(frozen=True)
class InclusionCriteria:
    """The study's acquisition protocol; scans outside it are kept but marked not included."""

    contrast_phase: str = "portal_venous"
    kernels: tuple[str, ...] = ("B30s",)
    slice_thickness_mm: float = 1.5
    slice_thickness_tolerance_mm: float = 0.05
    max_slice_tilt_deg: float = 5.0


@dataclass(frozen=True)
class SegmentationSettings:
    """Where liver and lesion masks come from: the cohort's own masks, or an nnU-Net v2 model folder."""

    method: str = "provided"            # "provided" | "nnunet"
    nnunet_model_dir: str | None = None  # holds plans.json, dataset.json, fold_N/
    nnunet_folds: tuple[int, ...] = (0,)
    nnunet_checkpoint: str = "checkpoint_final.pth"


@dataclass(frozen=True)
class LesionSettings:
    connectivity: str = "face"      # 3-D neighbourhood of connected components: face | edge | vertex
    min_diameter_mm: float = 5.0    # the study excludes lesions under 5 mm largest diameter


@dataclass(frozen=True)
class RadiomicsSettings:
    workers: int = max(1, os.cpu_count() or 1)
    crop_margin_voxels: int = 2     # one voxel already gives identical features; two is a safety margin


@dataclass(frozen=True)
class SliceSettings:
    size: int = 224
    window_width: float = 330.0
    window_level: float = 10.0
    border_fraction: float = 0.15   # border around the lesion, as a fraction of its larger in-plane extent
    min_border_px: int = 3


@dataclass(frozen=True)
class StudySettings:
    profile: str
    seed: int = DEFAULT_SEED
    inclusion: InclusionCriteria = field(default_factory=InclusionCriteria)
    segmentation: SegmentationSettings = field(default_factory=SegmentationSettings)
    lesions: LesionSettings = field(default_factory=LesionSettings)
    radiomics: RadiomicsSettings = field(default_factory=RadiomicsSettings)
    slices: SliceSettings = field(default_factory=SliceSettings)


PROFILES = {
    "paper": StudySettings(profile="paper"),
    "quick": StudySettings(profile="quick"),
}


def get_settings(profile: str, seed: int | None = None) -> StudySettings:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    settings = PROFILES[profile]
    return settings if seed is None else replace(settings, seed=seed)
