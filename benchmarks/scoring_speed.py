"""What scoring a scan with the promoted models costs: the `scan_predictions` step of a per-scan run.

On a trained store with promoted models (`metorigin models promote ...`), the scans' stored features
and slices are scored one scan at a time, in one process, as a batch of per-scan runs does: the
first scan pays for loading the models (they are cached per process), the others only score. Beside
it, the paper profile's CPU cost per lesion: the DenseNet at 224 px on every slice of a lesion (the
paper profile keeps them all), measured with an untrained DenseNet-121 of the same size (weights do
not change the arithmetic), times the store's mean slices per lesion.

    .venv/bin/python benchmarks/scoring_speed.py --store demo/store [--scans 20]
    .venv/bin/python benchmarks/scoring_speed.py --smoke   # tiny registered models on random data

Last line: `scan_scoring_s=... (median per scan, models loaded) model_load_s=... lesion_ms=...
lesions_per_scan=... paper_lesion_cpu_s=...`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a plain checkout too

from metorigin.core.store import Store  # noqa: E402
from metorigin.core.study import get_settings  # noqa: E402
from metorigin.imaging.slices import save_slices  # noqa: E402
from metorigin.inference.lesions import made_under, score_lesions, wide_features  # noqa: E402
from metorigin.inference.registry import promoted_models, read_promotions, registry_models  # noqa: E402
from metorigin.study.arm import LesionData  # noqa: E402
from metorigin.study.densenet import build_model, predict  # noqa: E402


def scan_timings(store: Store, scans: list[str]) -> tuple[list[float], list[int]]:
    """Seconds to score each scan (reading its rows excluded) and its lesion counts, in order."""
    registry = registry_models(store)
    models = promoted_models(registry, read_promotions(store))
    if not models:
        sys.exit(f"{store.root} has no promoted model: `metorigin models promote ID ... --store {store.root}` first")
    seconds, lesions = [], []
    for scan in scans:
        features = store.read_lake("radiomics_features", [scan])
        slices = store.read_lake("lesion_slices", [scan])
        rows = store.read_lake("lesions", [scan])
        wide = wide_features(features)
        under = made_under(features["settings_hash"], slices["settings_hash"], rows["settings_hash"])
        start = time.perf_counter()
        score_lesions(store.root, models, registry, LesionData(wide, rows, slices, store.root), under)
        seconds.append(time.perf_counter() - start)
        lesions.append(len(wide))
    return seconds, lesions


def densenet_seconds_per_slice(size: int, n: int) -> float:
    """CPU inference time per slice of an (untrained) DenseNet-121 at `size` px, after one warm-up batch."""
    network = build_model(torch.device("cpu"), 0)
    images = np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)
    predict(network, images[: min(n, 8)], torch.device("cpu"))
    start = time.perf_counter()
    predict(network, images, torch.device("cpu"), batch_size=64)
    return (time.perf_counter() - start) / n


def smoke_store(root: Path, scans: int = 3, lesions: int = 4) -> Store:
    """A store holding what scoring reads, at toy size: a Platt-scaled logistic regression, an
    untrained DenseNet at 32 px and their mean as the combined model, promoted, and random rows."""
    from metorigin.core.model_files import MODEL_SUFFIX, save_model_file
    from metorigin.study.classifiers import build_pipeline, classifier, platt_scale
    from metorigin.study.scoring import feature_reference, file_sha256

    store, rng = Store(root), np.random.default_rng(0)
    names = ["original_firstorder_Mean", "original_shape_Sphericity"]
    x = pd.DataFrame(rng.normal(size=(40, 2)), columns=names)
    y = (x.iloc[:, 0] > 0).astype(int).to_numpy()
    pipeline = build_pipeline(classifier("logistic_regression"), "undersampling", 0).fit(x, y)
    inputs = {"lesions": "l", "radiomics": "r", "slices": "s"}
    folder = root / "artifacts" / "models"
    folder.mkdir(parents=True)
    objects = {
        "rad-1": ("radiomics", platt_scale(pipeline, pipeline.predict_proba(x)[:, 1], y), {"features": names}),
        "cnn-1": ("densenet", None, {"params": {"image_size": 32, "max_slices_per_lesion": 2}}),
        "mix-1": ("combined", {"method": "mean"}, {"components": {"radiomics": "rad-1", "densenet": "cnn-1"}}),
    }
    rows = []
    for model_id, (arm, fitted, card) in objects.items():
        path = folder / f"{model_id}{'.pt' if arm == 'densenet' else MODEL_SUFFIX}"
        if arm == "densenet":
            torch.save(build_model(torch.device("cpu"), 0).state_dict(), path)
        else:
            save_model_file(fitted, path)
        card |= {
            "model_id": model_id,
            "arm": arm,
            "input_settings": inputs,
            "settings_hash": "h",
            "feature_reference": feature_reference(x),
            "calibration": {"positive_share": 0.4},
        }
        path.with_suffix(".json").write_text(json.dumps(card))
        rows.append(
            {
                "model_id": model_id,
                "arm": arm,
                "model": arm,
                "model_file": str(path.relative_to(root)),
                "file_sha256": file_sha256(path),
            }
        )
    store.write_lake("models", pd.DataFrame(rows))
    (root / "promotions.jsonl").write_text(
        "".join(json.dumps({"arm": r["arm"], "model_id": r["model_id"]}) + "\n" for r in rows)
    )
    for s in range(scans):
        scan = f"S{s}"
        ids = [f"{scan}-L{i}" for i in range(lesions)]
        long = pd.DataFrame(
            [(i, scan, "P", n, rng.normal(), "r") for i in ids for n in names],
            columns=["lesion_id", "scan_id", "patient_id", "feature_name", "feature_value", "settings_hash"],
        )
        npz = root / "artifacts" / "lesion_slices" / f"{scan}.npz"
        npz.parent.mkdir(parents=True, exist_ok=True)
        save_slices(npz, rng.integers(0, 256, (2 * lesions, 40, 40), dtype=np.uint8))
        index = pd.DataFrame(
            {
                "lesion_id": np.repeat(ids, 2),
                "slice_index": np.tile([0, 1], lesions),
                "array_row": np.arange(2 * lesions),
                "lesion_area_px": 10,
                "slices_file": str(npz.relative_to(root)),
                "settings_hash": "s",
            }
        )
        store.write_lake("radiomics_features", long, scan)
        store.write_lake("lesion_slices", index, scan)
        store.write_lake("lesions", pd.DataFrame({"lesion_id": ids, "settings_hash": "l"}), scan)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help="a trained store with promoted models")
    parser.add_argument("--scans", type=int, default=20, help="scans to score (the first of the store's)")
    parser.add_argument("--smoke", action="store_true", help="toy models and rows, to check the script runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = smoke_store(Path(tmp)) if args.smoke else Store(args.store)
        scans = store.lake_partitions("radiomics_features")[: args.scans]
        seconds, lesions = scan_timings(store, scans)
        counts = store.read_lake("lesion_slices", scans).groupby("lesion_id").size()
    warm = seconds[1:] or seconds
    median = statistics.median(warm)
    paper = get_settings("paper").densenet
    per_slice = densenet_seconds_per_slice(32 if args.smoke else paper.image_size, 8 if args.smoke else 64)
    print(f"{len(scans)} scans, {sum(lesions)} lesions; first scan {seconds[0]:.2f} s (loads the models)")
    print(
        f"scan_scoring_s={median:.3f} model_load_s={max(seconds[0] - median, 0):.3f} "
        f"lesion_ms={1000 * sum(warm) / max(sum(lesions[1:] or lesions), 1):.2f} "
        f"lesions_per_scan={statistics.mean(lesions):.1f} paper_lesion_cpu_s={per_slice * counts.mean():.3f}"
    )


if __name__ == "__main__":
    main()
