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
class SplitSettings:
    """The study's split: 4 test patients per class and 5 validation patients (the study's DenseNet
    split, 68/5/8, names 81 patients for its 78; here the rest of the 78 train: 65/5/8)."""

    test_patients_per_class: int = 4
    validation_fraction: float = 5 / 78   # 5 of the study's 78 patients; at least one per class


@dataclass(frozen=True)
class ModelSettings:
    """Radiomics arm: selection, tuning and the two estimates of performance (single split, repeated CV)."""

    max_abs_correlation: float = 0.6   # the study's PCC threshold for redundant features
    importance_repeats: int = 10       # permutation repeats per held-out fold (Table 2)
    tuning_folds: int = 3              # grouped CV folds on the training patients for hyper-parameters
    bootstrap_resamples: int = 1000    # patient-level bootstrap for the 95% intervals
    cv_repeats: int = 5                # repeated grouped CV over all patients: repeats x folds
    cv_folds: int = 5
    workers: int = max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class DenseNetSettings:
    """DenseNet-121 training budget. `paper` trains on every slice at 224 px (a GPU's work);
    `quick` trains on each lesion's largest slices at 96 px for a few epochs, so a 2-core CPU
    finishes in minutes: same steps, smaller budget, and a weaker model (say so when you quote it)."""

    image_size: int = 224
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    max_slices_per_lesion: int | None = None       # None: every slice; else the k with the largest lesion area
    max_train_images_per_epoch: int | None = None  # None: one pass over the training slices per epoch
    # Augmenting processes beside the trainer. On a 16-core H200 machine 12 kept the GPU busiest
    # (images/s as a share of a bare model step: 8: 69%, 10: 81%, 12: 81-85%, 14: 77%; the trainer
    # and the copy thread need cores too): benchmarks/densenet_throughput.py.
    loader_workers: int = max(0, (os.cpu_count() or 1) - 4)
    device: str = "auto"                           # auto: CUDA when present (bf16, channels-last), else CPU
    # Augmentation on the fly (the study's zoom, shear, rotation and width shift), each drawn per image.
    zoom: float = 0.1
    shear: float = 0.1
    rotate_deg: float = 15.0
    width_shift: float = 0.1


@dataclass(frozen=True)
class StudySettings:
    profile: str
    seed: int = DEFAULT_SEED
    inclusion: InclusionCriteria = field(default_factory=InclusionCriteria)
    segmentation: SegmentationSettings = field(default_factory=SegmentationSettings)
    lesions: LesionSettings = field(default_factory=LesionSettings)
    radiomics: RadiomicsSettings = field(default_factory=RadiomicsSettings)
    slices: SliceSettings = field(default_factory=SliceSettings)
    split: SplitSettings = field(default_factory=SplitSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    densenet: DenseNetSettings = field(default_factory=DenseNetSettings)


PROFILES = {
    "paper": StudySettings(profile="paper"),
    "quick": StudySettings(profile="quick", densenet=DenseNetSettings(
        image_size=96, epochs=4, batch_size=32, max_slices_per_lesion=3, max_train_images_per_epoch=1000,
        loader_workers=0)),
}


def get_settings(profile: str, seed: int | None = None) -> StudySettings:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    settings = PROFILES[profile]
    return settings if seed is None else replace(settings, seed=seed)
