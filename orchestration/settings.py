"""Study settings and the two named profiles.

`paper` reproduces the study's protocol; `quick` runs the same steps with smaller training
budgets so the whole study fits a 2-core laptop. Every number the study fixes lives here, so a
group with another protocol changes a setting, not the code.
"""

from __future__ import annotations

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
class StudySettings:
    profile: str
    seed: int = DEFAULT_SEED
    inclusion: InclusionCriteria = field(default_factory=InclusionCriteria)


PROFILES = {
    "paper": StudySettings(profile="paper"),
    "quick": StudySettings(profile="quick"),
}


def get_settings(profile: str, seed: int | None = None) -> StudySettings:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    settings = PROFILES[profile]
    return settings if seed is None else replace(settings, seed=seed)
