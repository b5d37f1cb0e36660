"""Phantoms of an upper abdomen with a metastatic liver: what a scan looks like, as numbers.

Every scan is described by a `ScanSpec` drawn in the parent process (cheap, deterministic), then
rendered to voxels in a worker. Shapes are implicit functions in physical millimetres, so the same
lesion renders identically on any grid and lesion placement never needs a voxel array.

Class differences are deliberately partial: colorectal metastases tend to be larger, more
lobulated, with a necrotic centre, a sharper margin and coarser texture; pancreatic ones smaller,
rounder, rim-enhancing, with a softer margin and finer texture. Every trait is drawn per patient
from overlapping distributions and then jittered per lesion, so lesions of one patient resemble
each other more than they resemble their class: a lesion-level split leaks the patient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

AIR_HU = -1000.0
FAT_HU = -100.0
MUSCLE_HU = 45.0
SOFT_TISSUE_HU = 15.0
BONE_HU = 450.0
MIN_INCLUDED_DIAMETER_MM = 5.0

# Per-patient lesion traits: (mean colorectal, mean pancreatic, between-patient sd, within-patient sd).
TRAITS = {
    "necrosis": (0.55, 0.30, 0.22, 0.08),  # depth of the hypodense centre, x 30 HU
    "rim": (0.30, 0.55, 0.22, 0.08),  # peripheral enhancement, x 25 HU
    "hetero_hu": (10.0, 8.0, 3.0, 1.2),  # amplitude of internal texture
    "corr_mm": (2.4, 1.8, 0.5, 0.2),  # grain of internal texture
    "margin_mm": (0.7, 1.1, 0.3, 0.12),  # width of the lesion-liver transition
    "lobulation": (0.16, 0.10, 0.06, 0.03),  # radial irregularity of the outline
}
TRAIT_LIMITS = {
    "necrosis": (0, 1),
    "rim": (0, 1),
    "hetero_hu": (2, 25),
    "corr_mm": (0.8, 5),
    "margin_mm": (0.25, 2.5),
    "lobulation": (0, 0.35),
}


@dataclass(frozen=True)
class Grid:
    """A CT voxel grid: axial slices, in-plane axes optionally flipped as NIfTI converters do."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    flipped_xy: bool = False

    @property
    def direction(self) -> tuple[float, ...]:
        s = -1.0 if self.flipped_xy else 1.0
        return (s, 0.0, 0.0, 0.0, s, 0.0, 0.0, 0.0, 1.0)

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Physical x, y, z of voxel centres along each grid axis."""
        s = -1.0 if self.flipped_xy else 1.0
        return tuple(
            o + sign * sp * np.arange(n, dtype=np.float64)
            for o, sign, sp, n in zip(self.origin, (s, s, 1.0), self.spacing, self.size)
        )


@dataclass(frozen=True)
class Body:
    half_width: float
    half_depth: float
    fat_mm: float
    muscle_mm: float = 10.0

    def interior(self, x, y):
        a = self.half_width - self.fat_mm - self.muscle_mm
        b = self.half_depth - self.fat_mm - self.muscle_mm
        return (x / a) ** 2 + (y / b) ** 2 < 1.0


@dataclass(frozen=True)
class Liver:
    center: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    taper: float  # thinner towards the left lobe
    wobble: tuple[float, ...]  # amplitude and 3 phases of a smooth surface perturbation

    def level(self, x, y, z):
        """< 1 inside the liver ellipsoid-like shape (before clipping by the body wall)."""
        u, v, w = ((c - c0) / a for c, c0, a in zip((x, y, z), self.center, self.semi_axes))
        amp, p1, p2, p3 = self.wobble
        return (u * u + v * v + w * w) * (1.0 + self.taper * np.clip(u, 0, None)) + amp * np.sin(2.1 * u + p1) * np.sin(
            1.7 * v + p2
        ) * np.sin(1.9 * w + p3)


@dataclass(frozen=True)
class Lesion:
    center: tuple[float, float, float]
    radius_mm: float
    axes: tuple[float, float, float]
    rotation: tuple[float, ...]
    lobe_dirs: tuple[float, ...]
    lobe_phases: tuple[float, ...]
    mean_hu: float
    necrosis: float
    rim: float
    hetero_hu: float
    corr_mm: float
    margin_mm: float
    lobulation: float
    seed: int

    @property
    def reach_mm(self) -> float:
        """A radius that surely contains the lesion and its blurred margin."""
        return self.radius_mm * max(self.axes) * (1 + self.lobulation) + 2 * self.margin_mm + 0.5

    def signed_distance(self, x, y, z):
        """Approximate distance to the outline in mm (negative inside), and the relative radius."""
        rot = np.asarray(self.rotation).reshape(3, 3)
        d = np.stack([x - self.center[0], y - self.center[1], z - self.center[2]], axis=-1) @ rot
        d = d / np.asarray(self.axes)
        rho = np.sqrt((d * d).sum(axis=-1)) + 1e-9
        unit = d / rho[..., None]
        dirs = np.asarray(self.lobe_dirs).reshape(-1, 3)
        bumps = np.cos(3.0 * (unit @ dirs.T) + np.asarray(self.lobe_phases)).mean(axis=-1)
        outline = self.radius_mm * (1.0 + self.lobulation * bumps)
        return rho - outline, rho / outline


@dataclass(frozen=True)
class ScanSpec:
    scan_id: str
    patient_id: str
    seed: int
    grid: Grid
    body: Body
    liver: Liver
    lesions: tuple[Lesion, ...]
    liver_hu: float
    aorta_hu: float
    noise_hu: float
    kernel: str
    slice_thickness_mm: float
    contrast_phase: str


def sample_trait(name: str, site: str, rng: np.random.Generator, patient_value: float | None = None) -> float:
    """A patient's trait (when `patient_value` is None) or a lesion's jitter around it."""
    crc, pan, between, within = TRAITS[name]
    mean = patient_value if patient_value is not None else (crc if site == "colorectal" else pan)
    sd = within if patient_value is not None else between
    return float(np.clip(rng.normal(mean, sd), *TRAIT_LIMITS[name]))


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def render(spec: ScanSpec) -> tuple[np.ndarray, np.ndarray]:
    """Voxels (int16 HU) and label map (0 background, 1 liver, 2 lesion), both indexed [z, y, x]."""
    rng = np.random.default_rng(spec.seed)
    xs, ys, zs = spec.grid.axes()
    nx, ny, nz = spec.grid.size
    X, Y = xs[None, :], ys[:, None]

    body2d = (X / spec.body.half_width) ** 2 + (Y / spec.body.half_depth) ** 2 < 1.0
    inner_a = spec.body.half_width - spec.body.fat_mm
    inner_b = spec.body.half_depth - spec.body.fat_mm
    muscle2d = (X / inner_a) ** 2 + (Y / inner_b) ** 2 < 1.0
    interior2d = spec.body.interior(X, Y)
    spine_y = spec.body.half_depth - spec.body.fat_mm - spec.body.muscle_mm - 22.0
    spine2d = X**2 + (Y - spine_y) ** 2 < 16.0**2
    aorta2d = (X - 18.0) ** 2 + (Y - spine_y + 30.0) ** 2 < 11.0**2
    slice2d = np.full((ny, nx), AIR_HU, dtype=np.float32)
    slice2d[body2d] = FAT_HU
    slice2d[muscle2d] = MUSCLE_HU
    slice2d[interior2d] = SOFT_TISSUE_HU
    slice2d[spine2d] = BONE_HU
    slice2d[aorta2d] = spec.aorta_hu
    image = np.broadcast_to(slice2d, (nz, ny, nx)).copy()
    # Bowel, fat and vessels around the liver, as a smooth field: separable cosines cost almost nothing.
    image += np.where(interior2d & ~spine2d & ~aorta2d, 1.0, 0.0)[None] * _smooth_field(rng, xs, ys, zs, 35.0, 0.08)

    liver = (spec.liver.level(X[None], Y[None], zs[:, None, None]) < 1.0) & interior2d[None]
    image[liver] = spec.liver_hu + _smooth_field(rng, xs, ys, zs, 4.0, 0.05)[liver]
    labels = liver.astype(np.uint8)

    for lesion in spec.lesions:
        _paint_lesion(image, labels, lesion, xs, ys, zs, spec.grid.spacing)

    noise = rng.standard_normal(image.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, sigma=(0, 0.7, 0.7), truncate=2.0)
    noise *= spec.noise_hu / noise.std()
    image += noise
    outside = ~body2d
    image[:, outside] = AIR_HU + 0.2 * noise[:, outside]
    return np.clip(np.rint(image), -1024, 3071).astype(np.int16), labels


def _smooth_field(rng, xs, ys, zs, amplitude: float, max_freq: float) -> np.ndarray:
    """A smooth random field, as a sum of separable cosine products (no 3-D filtering needed)."""
    field = np.zeros((zs.size, ys.size, xs.size), dtype=np.float32)
    for _ in range(6):
        fx, fy, fz = rng.uniform(0.01, max_freq, 3)
        px, py, pz = rng.uniform(0, 2 * np.pi, 3)
        field += (
            np.cos(fz * zs + pz)[:, None, None].astype(np.float32)
            * np.cos(fy * ys + py)[None, :, None].astype(np.float32)
            * np.cos(fx * xs + px)[None, None, :].astype(np.float32)
        )
    return field * (amplitude / np.sqrt(6 / 8))


def _index_window(axis: np.ndarray, lo: float, hi: float) -> slice:
    """Grid indices whose physical coordinate lies in [lo, hi], for ascending or descending axes."""
    inside = np.nonzero((axis >= lo) & (axis <= hi))[0]
    return slice(int(inside.min()), int(inside.max()) + 1) if inside.size else slice(0, 0)


def _paint_lesion(image, labels, lesion: Lesion, xs, ys, zs, spacing) -> None:
    reach = lesion.reach_mm
    windows = [_index_window(axis, c - reach, c + reach) for axis, c in zip((xs, ys, zs), lesion.center)]
    sx, sy, sz = windows
    if any(w.stop <= w.start for w in windows):
        return
    x, y, z = np.meshgrid(xs[sx], ys[sy], zs[sz], indexing="ij")
    x, y, z = (a.transpose(2, 1, 0) for a in (x, y, z))  # to [z, y, x]
    dist, rel = lesion.signed_distance(x, y, z)
    inside = dist < 0
    if not inside.any():
        return
    rng = np.random.default_rng(lesion.seed)
    texture = rng.standard_normal(dist.shape)
    sigma = [lesion.corr_mm / s for s in (spacing[2], spacing[1], spacing[0])]
    texture = ndimage.gaussian_filter(texture, sigma=sigma)
    texture /= texture.std() + 1e-9
    profile = (
        -30.0 * lesion.necrosis * np.exp(-((rel / 0.55) ** 2))
        + 25.0 * lesion.rim * np.exp(-(((rel - 0.85) / 0.12) ** 2))
        + lesion.hetero_hu * texture
    )
    alpha = 0.5 * (1.0 - np.tanh(dist / lesion.margin_mm))
    box = (sz, sy, sx)
    blended = alpha * profile + (1 - alpha) * image[box]
    # Shift by alpha so the mean over the labelled voxels hits the lesion's target mean exactly,
    # without a step at the outline.
    blended += alpha * (lesion.mean_hu - blended[inside].mean()) / alpha[inside].mean()
    image[box] = blended
    labels[box][inside] = 2
