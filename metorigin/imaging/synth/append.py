"""New synthetic patients added to an existing synthetic cohort, by default unlabelled.

A cohort grows after a study has trained: new patients arrive, often before anyone knows their
primary tumour. This writes such patients the way the generator writes its own (one included
portal-venous scan each, images and masks beside the others, the class drawn from Table 1), and
leaves their label cell empty, so the pipeline measures and scores them and never trains on them.
The class each was drawn with is kept in `truth/patients.csv`, for tests only.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .cohort import SynthConfig, draw_patients, render_scans, sample_scan, scan_tables
from .demographics import TABLE1

# Entropy that the generator's per-patient seeds ([seed, index]) never hold in this position, so an
# appended patient never repeats a generated one's anatomy when both use the same seed.
APPEND_STREAM = 2**31 - 1
PREFIXES = {True: "U", False: "N"}  # unlabelled U001, U002...; labelled N001...


def append_patients(
    cohort_dir: Path, n: int, seed: int, unlabelled: bool = True, matrix: int | None = None, workers: int = 1
) -> list[str]:
    """Write `n` new patients into the synthetic cohort at `cohort_dir` and return their ids.

    Each gets one included scan (`<patient>-S1`) in images/ and masks/, a row in patients.csv (the
    label cell empty when `unlabelled`) and scans.csv, and the generator's truth rows. Ids continue
    after the highest one of their prefix already in the cohort, so they never collide; the draws
    depend on the seed and the first new id only. `matrix`: in-plane voxels, by default the
    cohort's own (read from its first NIfTI image), so the new scans look like the others."""
    if n < 1:
        raise ValueError(f"append at least one patient (n = {n})")
    cohort_dir = Path(cohort_dir)
    numbers = _free_numbers(cohort_dir, PREFIXES[unlabelled], n)
    sequence = np.random.SeedSequence([seed, APPEND_STREAM, numbers[0]])
    rng = np.random.default_rng(sequence)
    sites = list(TABLE1)
    weights = np.array([TABLE1[site]["n"] for site in sites], dtype=float)
    drawn = rng.choice(len(sites), size=n, p=weights / weights.sum())  # the classes in Table 1's proportions
    patients, draws = draw_patients({site: int((drawn == i).sum()) for i, site in enumerate(sites)}, rng)
    size = matrix or _cohort_matrix(cohort_dir)
    specs = []
    for number, patient, draw, child in zip(numbers, patients, draws, sequence.spawn(n)):
        patient["patient_id"] = f"{PREFIXES[unlabelled]}{number:03d}"
        specs.append(sample_scan(patient, f"{patient['patient_id']}-S1", np.random.default_rng(child), size, draw))
    rows = render_scans([(spec, cohort_dir, "nifti", False) for spec in specs], workers)
    scans, truth_scans, truth_lesions = scan_tables(specs, rows)
    truth = [{"patient_id": p["patient_id"], "primary_site": p["primary_site"]} for p in patients]
    _append_csv(cohort_dir / "patients.csv", [p | {"primary_site": ""} for p in patients] if unlabelled else patients)
    _append_csv(cohort_dir / "scans.csv", scans)
    _append_csv(cohort_dir / "truth" / "scans.csv", truth_scans)
    _append_csv(cohort_dir / "truth" / "lesions.csv", truth_lesions)
    _append_csv(cohort_dir / "truth" / "patients.csv", truth)
    return [p["patient_id"] for p in patients]


def _free_numbers(cohort_dir: Path, prefix: str, n: int) -> list[int]:
    """`n` numbers after the highest `<prefix>NNN` patient or `<prefix>NNN-...` scan of the cohort."""
    taken = [0]
    for name, column in (("patients.csv", "patient_id"), ("scans.csv", "scan_id")):
        with open(cohort_dir / name, newline="", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                if found := re.fullmatch(rf"{prefix}(\d+)(-.*)?", (row.get(column) or "").strip()):
                    taken.append(int(found.group(1)))
    return list(range(max(taken) + 1, max(taken) + 1 + n))


def _cohort_matrix(cohort_dir: Path) -> int:
    """The in-plane size of the cohort's first NIfTI image (the generator's `matrix`)."""
    for image in sorted((cohort_dir / "images").glob("*.nii.gz")):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(image))
        reader.ReadImageInformation()
        return int(reader.GetSize()[0])
    return SynthConfig.matrix


def _append_csv(path: Path, rows: list[dict]) -> None:
    """Rows added under the file's own header (a column it lacks is dropped, one the rows lack is
    left empty); a file that does not exist yet gets the rows' keys as its header."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(",".join(rows[0]) + "\n")
    text = path.read_text(encoding="utf-8-sig")
    header = next(csv.reader([text.splitlines()[0]]))
    with open(path, "a", newline="") as fh:
        if not text.endswith("\n"):
            fh.write("\n")
        csv.DictWriter(fh, fieldnames=header, extrasaction="ignore").writerows(rows)
