"""Generate a synthetic cohort folder that satisfies the cohort contract.

Everything random is drawn from one seed through per-patient child seeds, so the cohort is
identical whatever the number of worker processes that render it.
"""

from __future__ import annotations

import csv
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, stats

from . import anatomy
from .anatomy import Body, Grid, Lesion, Liver, ScanSpec
from .demographics import TABLE1, sample_patients
from .dicom import write_dicom_series

# Scans that fail the study protocol, one of each kind in turn. Each is a second scan of a patient
# who keeps an included scan, as in real cohorts where several series exist per examination.
EXCLUDED_KINDS = ("arterial", "thick_slices", "sharp_kernel")


@dataclass(frozen=True)
class SynthConfig:
    """How big and how detailed the cohort is. scale 1.0 = the study's 47 + 31 patients."""

    seed: int = 7
    scale: float = 1.0
    matrix: int = 256
    workers: int = max(1, os.cpu_count() or 1)

    def patient_counts(self) -> dict[str, int]:
        return {site: max(4, round(spec["n"] * self.scale)) for site, spec in TABLE1.items()}


def generate_cohort(
    out: Path, config: SynthConfig = SynthConfig(), progress: Callable[[int, int], None] | None = None
) -> Path:
    """Write patients.csv, scans.csv, images, masks and a ground-truth folder into `out`."""
    out = Path(out)
    for sub in ("images", "masks", "truth"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    patients, draws = draw_patients(config.patient_counts(), rng)
    specs = []
    for index, patient in enumerate(patients):
        patient["patient_id"] = f"P{index + 1:03d}"
        patient_rng = np.random.default_rng(np.random.SeedSequence([config.seed, index]))
        specs.append(sample_scan(patient, f"S{index + 1:04d}", patient_rng, config.matrix, draws[index]))
    n_excluded = max(2, round(0.05 * len(patients)))
    for k, index in enumerate(sorted(rng.choice(len(patients), n_excluded, replace=False))):
        kind = EXCLUDED_KINDS[k % len(EXCLUDED_KINDS)]
        specs.append(excluded_variant(specs[index], f"S{len(specs) + 1:04d}", kind))

    # One included scan as a DICOM series (metadata left to the headers), one mask on a
    # reoriented grid: both paths of the contract are exercised by every generated cohort.
    jobs = [(spec, out, "dicom" if i == 0 else "nifti", i == 1) for i, spec in enumerate(specs)]
    rows = render_scans(jobs, config.workers, progress)
    _write_csvs(out, patients, specs, rows)
    _write_readme(out, config, len(patients), len(specs))
    return out


def draw_patients(counts: dict[str, int], rng: np.random.Generator) -> tuple[list[dict], list[tuple[int, float]]]:
    """`counts[site]` patients of each site in a random order (ids must not reveal the class), and
    each one's lesion count and tumour-burden quantile (`_class_draws`)."""
    patients = []
    for site, n in counts.items():
        patients += sample_patients(site, n, rng)
    patients = [patients[i] for i in rng.permutation(len(patients))]
    return patients, _class_draws(patients, rng)


def render_scans(
    jobs: list[tuple[ScanSpec, Path, str, bool]], workers: int, progress: Callable[[int, int], None] | None = None
) -> list[dict]:
    """Render and write each job's image and mask (in worker processes), and what was written."""
    rows = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for done, row in enumerate(pool.map(_render_and_write, jobs), start=1):
            rows.append(row)
            if progress:
                progress(done, len(jobs))
    return rows


def _class_draws(patients: list[dict], rng: np.random.Generator) -> list[tuple[int, float]]:
    """Per patient, a lesion count and a tumour-burden quantile, drawn per class.

    Lesion counts are over-dispersed (a few patients have very many lesions), so independent
    draws can miss the class mean by a third in a cohort of 31. Counts are drawn from stratified
    quantiles and then nudged so the class total is exactly n x the study's lesions per patient
    (435 and 861 at scale 1.0); burden quantiles are stratified the same way.
    """
    draws: list[tuple[int, float]] = [(1, 0.5)] * len(patients)
    for site, table in TABLE1.items():
        members = [i for i, p in enumerate(patients) if p["primary_site"] == site]
        n = len(members)
        mean = table["lesions_per_patient"]
        count_q, burden_q = ((rng.permutation(n) + rng.random(n)) / n for _ in range(2))
        counts = 1 + stats.nbinom.ppf(count_q, 4, 4 / (4 + mean - 1)).astype(int)
        gap = round(mean * n) - int(counts.sum())
        for k in rng.choice(n, size=abs(gap), replace=True):
            counts[k] = max(1, counts[k] + int(np.sign(gap)))
        for k, index in enumerate(members):
            draws[index] = (int(counts[k]), float(burden_q[k]))
    return draws


def sample_scan(
    patient: dict, scan_id: str, rng: np.random.Generator, matrix: int, draw: tuple[int, float]
) -> ScanSpec:
    """Anatomy, lesions and acquisition of a patient's (included) portal-venous scan.

    `draw` is the patient's lesion count and tumour-burden quantile within its class.
    """
    site = patient["primary_site"]
    table = TABLE1[site]
    half_width = rng.uniform(150, 175)
    body = Body(half_width=half_width, half_depth=half_width * rng.uniform(0.68, 0.78), fat_mm=rng.uniform(10, 28))
    interior_a = body.half_width - body.fat_mm - body.muscle_mm
    semi = (rng.normal(82, 5), rng.normal(72, 5), rng.normal(74, 5))
    liver = Liver(
        center=(-(interior_a - 0.8 * semi[0]), rng.normal(-12, 4), rng.uniform(-210, -120)),
        semi_axes=semi,
        taper=rng.uniform(0.2, 0.45),
        wobble=(rng.uniform(0.03, 0.08), *rng.uniform(0, 2 * np.pi, 3)),
    )
    liver_map = _LiverMap(liver, body)

    enhancement = rng.normal(0, 7)  # per-patient contrast uptake, shared by liver and lesions
    liver_hu = table["liver_mean_hu"] + enhancement
    lesion_hu = table["lesion_mean_hu"] + 0.4 * enhancement + rng.normal(0, 5)
    traits = {name: anatomy.sample_trait(name, site, rng) for name in anatomy.TRAITS}
    lesions = _place_lesions(site, liver_map, lesion_hu, traits, draw, rng)

    fov = rng.uniform(190, 220)  # a liver-targeted reconstruction; the matrix sets the voxel size
    spacing_xy = round(fov / matrix, 4)
    fov = matrix * spacing_xy
    center_x = liver.center[0] + 12 + rng.normal(0, 4)
    center_y = liver.center[1] + rng.normal(0, 4)
    z_lo = liver.center[2] - 1.1 * semi[2] - 12
    z_hi = liver.center[2] + 1.1 * semi[2] + 12
    grid = _axial_grid(
        matrix,
        spacing_xy,
        (center_x - fov / 2, center_y - fov / 2),
        (z_lo, z_hi),
        1.5,
        flipped=bool(rng.random() < 0.5),
    )
    return ScanSpec(
        scan_id=scan_id,
        patient_id=patient["patient_id"],
        seed=int(rng.integers(2**31)),
        grid=grid,
        body=body,
        liver=liver,
        lesions=lesions,
        liver_hu=liver_hu,
        aorta_hu=rng.normal(165, 15),
        noise_hu=rng.uniform(9, 15),
        kernel="B30s",
        slice_thickness_mm=1.5,
        contrast_phase="portal_venous",
    )


def excluded_variant(spec: ScanSpec, scan_id: str, kind: str) -> ScanSpec:
    """Another series of the same examination that fails one inclusion criterion."""
    base = replace(spec, scan_id=scan_id, seed=spec.seed + 1)
    if kind == "arterial":
        lesions = tuple(replace(les, mean_hu=les.mean_hu - 10) for les in spec.lesions)
        return replace(base, contrast_phase="arterial", liver_hu=spec.liver_hu - 25, aorta_hu=300.0, lesions=lesions)
    if kind == "thick_slices":
        g = spec.grid
        z_lo = g.origin[2] - g.spacing[2] / 2
        z_hi = z_lo + g.size[2] * g.spacing[2]
        grid = _axial_grid(g.size[0], g.spacing[0], _fov_corner(g), (z_lo, z_hi), 5.0, g.flipped_xy)
        return replace(base, grid=grid, slice_thickness_mm=5.0, noise_hu=spec.noise_hu * 0.6)
    if kind == "sharp_kernel":
        return replace(base, kernel="B70f", noise_hu=spec.noise_hu * 2.5)
    raise ValueError(f"unknown excluded scan kind {kind!r}")


def _fov_corner(grid: Grid) -> tuple[float, float]:
    """Lowest physical x and y of the field of view (voxel edges), whichever way the axes run."""
    xs, ys, _ = grid.axes()
    return xs.min() - grid.spacing[0] / 2, ys.min() - grid.spacing[1] / 2


def _axial_grid(
    matrix: int,
    spacing_xy: float,
    corner: tuple[float, float],
    z_range: tuple[float, float],
    spacing_z: float,
    flipped: bool,
) -> Grid:
    fov = matrix * spacing_xy
    nz = int(math.ceil((z_range[1] - z_range[0]) / spacing_z))
    if flipped:  # origin at the far corner, axes running towards -x and -y
        origin_xy = (corner[0] + fov - spacing_xy / 2, corner[1] + fov - spacing_xy / 2)
    else:
        origin_xy = (corner[0] + spacing_xy / 2, corner[1] + spacing_xy / 2)
    origin = (round(origin_xy[0], 3), round(origin_xy[1], 3), round(z_range[0] + spacing_z / 2, 3))
    return Grid(
        size=(matrix, matrix, nz), spacing=(spacing_xy, spacing_xy, spacing_z), origin=origin, flipped_xy=flipped
    )


class _LiverMap:
    """The liver sampled on a coarse grid: its volume, and how deep inside it each point lies.

    Lesions are placed by drawing centres among points deep enough for them, which never wastes a
    draw on a point outside the (tapered, body-clipped) liver.
    """

    step = 2.0

    def __init__(self, liver: Liver, body: Body):
        axes = [np.arange(c - 1.3 * a, c + 1.3 * a, self.step) for c, a in zip(liver.center, liver.semi_axes)]
        x, y, z = np.meshgrid(*axes, indexing="ij")
        inside = (liver.level(x, y, z) < 1.0) & body.interior(x, y)
        self.volume_ml = float(inside.sum() * self.step**3 / 1000.0)
        depth = ndimage.distance_transform_edt(inside) * self.step
        keep = depth > 0
        self.points = np.stack([x[keep], y[keep], z[keep]], axis=1)
        self.depth = depth[keep]


def _lesion_sizes(site: str, liver_ml: float, draw: tuple[int, float], rng: np.random.Generator) -> list[float]:
    """Equivalent-sphere radii (mm): the drawn count and burden, log-normal spread, some tiny."""
    table = TABLE1[site]
    count, burden_q = draw
    burden = float(np.clip(stats.norm.ppf(burden_q, table["tumor_burden"], 0.3 * table["tumor_burden"]), 0.01, 0.25))
    tiny = rng.random(count) < 0.07  # sub-5 mm lesions, excluded downstream with a reason
    tiny[0] = False  # every patient keeps at least one measurable lesion
    weights = rng.lognormal(0.0, 0.7, size=count) * ~tiny
    volumes_mm3 = weights / weights.sum() * burden * liver_ml * 1000.0
    radii = np.cbrt(3 * volumes_mm3 / (4 * np.pi)).clip(1.2, 40.0)
    radii[tiny] = rng.uniform(1.2, 2.3, size=tiny.sum())
    return sorted(radii.tolist(), reverse=True)


def _place_lesions(
    site, liver_map: _LiverMap, lesion_hu: float, traits: dict, draw: tuple[int, float], rng: np.random.Generator
) -> tuple[Lesion, ...]:
    """Non-overlapping lesions wholly inside the liver, largest first (they are hardest to fit).

    A lesion that finds no room shrinks by 10% and tries again, so the count is kept and the
    burden falls short only when the liver is truly full.
    """
    placed: list[Lesion] = []
    for radius in _lesion_sizes(site, liver_map.volume_ml, draw, rng):
        lesion_traits = {k: anatomy.sample_trait(k, site, rng, v) for k, v in traits.items()}
        axes = np.array([1.0, rng.uniform(0.75, 1.0), rng.uniform(0.7, 1.0)])
        template = Lesion(
            center=(0.0, 0.0, 0.0),
            radius_mm=radius,
            axes=tuple(axes / np.cbrt(axes.prod())),
            rotation=tuple(anatomy.random_rotation(rng).ravel()),
            lobe_dirs=tuple(anatomy.random_rotation(rng).ravel()),
            lobe_phases=tuple(rng.uniform(0, 2 * np.pi, 3)),
            mean_hu=lesion_hu + rng.normal(0, 5),
            seed=int(rng.integers(2**31)),
            **lesion_traits,
        )
        for _shrink in range(12):
            lesion = _find_room(template, liver_map, placed, rng)
            if lesion is not None:
                placed.append(lesion)
                break
            template = replace(template, radius_mm=template.radius_mm * 0.9)
    return tuple(placed)


def _find_room(template: Lesion, liver_map: _LiverMap, placed: list[Lesion], rng) -> Lesion | None:
    reach = template.reach_mm
    candidates = liver_map.points[liver_map.depth >= reach + 0.5 * liver_map.step]
    if not len(candidates):
        return None
    for index in rng.integers(len(candidates), size=min(200, len(candidates))):
        center = candidates[index] + rng.uniform(-0.5, 0.5, 3) * liver_map.step
        if all(np.linalg.norm(center - np.array(p.center)) >= reach + p.reach_mm for p in placed):
            return replace(template, center=tuple(float(c) for c in center))
    return None


def _render_and_write(job: tuple[ScanSpec, Path, str, bool]) -> dict:
    spec, out, fmt, reoriented_mask = job
    voxels, labels = anatomy.render(spec)
    image = _to_sitk(voxels, spec.grid)
    mask = _to_sitk(labels, spec.grid)
    if fmt == "dicom":
        image_rel = f"images/{spec.scan_id}"
        write_dicom_series(image, out / image_rel, spec)
    else:
        image_rel = f"images/{spec.scan_id}.nii.gz"
        sitk.WriteImage(image, str(out / image_rel), useCompression=True)
    if reoriented_mask:
        # Same physical space, axes permuted and flipped: the imaging pipeline must resample it.
        mask = sitk.DICOMOrient(mask, "ALS" if not spec.grid.flipped_xy else "PRS")
    mask_rel = f"masks/{spec.scan_id}.nii.gz"
    sitk.WriteImage(mask, str(out / mask_rel), useCompression=True)
    voxel_ml = float(np.prod(spec.grid.spacing)) / 1000.0
    lesion_voxels = int((labels == 2).sum())
    liver_voxels = int((labels >= 1).sum())
    return {
        "scan_id": spec.scan_id,
        "image": image_rel,
        "mask": mask_rel,
        "format": fmt,
        "liver_ml": liver_voxels * voxel_ml,
        "lesion_ml": lesion_voxels * voxel_ml,
        "liver_hu": float(voxels[labels == 1].mean()),
        "lesion_hu": float(voxels[labels == 2].mean()) if lesion_voxels else math.nan,
    }


def _to_sitk(array: np.ndarray, grid: Grid) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(grid.spacing)
    image.SetOrigin(grid.origin)
    image.SetDirection(grid.direction)
    return image


def _write_csvs(out: Path, patients: list[dict], specs: list[ScanSpec], rows: list[dict]) -> None:
    _write_csv(
        out / "patients.csv", ["patient_id", "primary_site", "age", "sex", "t_stage", "n_stage", "m_stage"], patients
    )
    scans, truth_scans, truth_lesions = scan_tables(specs, rows)
    _write_csv(out / "scans.csv", list(scans[0]), scans)
    _write_csv(out / "truth" / "scans.csv", list(truth_scans[0]), truth_scans)
    _write_csv(out / "truth" / "lesions.csv", list(truth_lesions[0]), truth_lesions)


def scan_tables(specs: list[ScanSpec], rows: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """The rows of scans.csv, truth/scans.csv and truth/lesions.csv for rendered scans (`rows`:
    what `render_scans` wrote)."""
    by_id = {row["scan_id"]: row for row in rows}
    scans, truth_scans, truth_lesions = [], [], []
    for spec in specs:
        row = by_id[spec.scan_id]
        dicom = row["format"] == "dicom"
        scans.append(
            {
                "scan_id": spec.scan_id,
                "patient_id": spec.patient_id,
                "image": row["image"],
                "mask": row["mask"],
                "liver_labels": "1",
                "lesion_labels": "2",
                "kernel": "" if dicom else spec.kernel,
                "slice_thickness_mm": "" if dicom else f"{spec.slice_thickness_mm:g}",
                "contrast_phase": "" if dicom else spec.contrast_phase,
            }
        )
        truth_scans.append(
            {
                "scan_id": spec.scan_id,
                "n_lesions": len(spec.lesions),
                "liver_ml": round(row["liver_ml"], 3),
                "lesion_ml": round(row["lesion_ml"], 3),
                "liver_hu": round(row["liver_hu"], 2),
                "lesion_hu": round(row["lesion_hu"], 2),
            }
        )
        for n, les in enumerate(spec.lesions):
            truth_lesions.append(
                {
                    "scan_id": spec.scan_id,
                    "lesion": n,
                    "center_x": round(les.center[0], 2),
                    "center_y": round(les.center[1], 2),
                    "center_z": round(les.center[2], 2),
                    "radius_mm": round(les.radius_mm, 3),
                    "mean_hu": round(les.mean_hu, 2),
                    **{k: round(getattr(les, k), 4) for k in anatomy.TRAITS},
                }
            )
    return scans, truth_scans, truth_lesions


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _write_readme(out: Path, config: SynthConfig, n_patients: int, n_scans: int) -> None:
    (out / "README.md").write_text(
        f"# Synthetic cohort (generated, not patient data)\n\n"
        f"Made by `metorigin synth` with seed {config.seed}, scale {config.scale}, matrix {config.matrix}: "
        f"{n_patients} patients, {n_scans} scans. Mimics Table 1 of the study; see metorigin/imaging/synth/.\n"
        f"`truth/` holds what the generator drew (lesion centres, sizes, traits), for tests only.\n"
    )
