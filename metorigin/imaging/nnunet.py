"""Segmentation with an nnU-Net v2 model folder, through nnU-Net's own predictor.

The study segmented with a pretrained nnU-Net liver model; a research group brings its own
(`metorigin run --nnunet-model DIR`). The folder is what nnU-Net writes after training:
`plans.json`, `dataset.json`, `dataset_fingerprint.json` and `fold_N/checkpoint_*.pth`. Which
output labels are liver and lesion is read from the names in `dataset.json`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from metorigin.core.devices import choose_device
from metorigin.core.errors import ScanProcessingError
from metorigin.core.files import file_digest
from metorigin.imaging.segmentation import SegmentationResult, as_image, to_project_labels

LIVER_NAMES = {"liver"}
LESION_NAMES = {"tumor", "tumour", "tumors", "tumours", "lesion", "lesions", "metastasis", "metastases"}


def _require_model_files(model_dir: Path, folds: tuple, checkpoint: str, scan_id: str) -> list[Path]:
    needed = [model_dir / "plans.json", model_dir / "dataset.json"]
    needed += [model_dir / f"fold_{f}" / checkpoint for f in folds]
    missing = [str(p.relative_to(model_dir)) for p in needed if not p.is_file()]
    if missing:
        raise ScanProcessingError(
            scan_id,
            "segmentation",
            f"the nnU-Net model folder {model_dir} lacks {', '.join(missing)}",
            "point --nnunet-model at a trained nnU-Net v2 results "
            "folder (the one holding plans.json, dataset.json and fold_N/)",
        )
    return needed


def model_identity(model_dir: Path, folds: tuple, checkpoint: str) -> str:
    """Name, folds and content hashes: two runs with the same id used the same weights and plans."""
    files = [model_dir / "plans.json"] + [model_dir / f"fold_{f}" / checkpoint for f in folds]
    digest = "-".join(file_digest(p, 8) for p in files)
    return f"nnunetv2:{model_dir.name}:folds={','.join(map(str, folds))}:{checkpoint}:{digest}"


def label_roles(dataset_json: dict, scan_id: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    labels = dataset_json.get("labels", {})
    liver = tuple(v for k, v in labels.items() if k.lower() in LIVER_NAMES and isinstance(v, int))
    lesion = tuple(v for k, v in labels.items() if k.lower() in LESION_NAMES and isinstance(v, int))
    if not liver:
        raise ScanProcessingError(
            scan_id,
            "segmentation",
            f"dataset.json names no 'liver' label (labels: {labels})",
            "use a model whose dataset.json labels include 'liver' (and 'tumor' or 'lesion')",
        )
    return liver, lesion


@lru_cache(maxsize=2)
def load_predictor(model_dir: str, folds: tuple, checkpoint: str, device_type: str):
    """One predictor per model and process: loading weights costs more than predicting a small scan."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(
        device=torch.device(device_type),
        use_mirroring=device_type == "cuda",
        perform_everything_on_device=device_type == "cuda",
        verbose=False,
        allow_tqdm=False,
    )
    predictor.initialize_from_trained_model_folder(model_dir, use_folds=folds, checkpoint_name=checkpoint)
    return predictor


def nnunet_segmentation(
    image: sitk.Image, model_dir: Path, folds: tuple, checkpoint: str, scan_id: str
) -> SegmentationResult:
    model_dir = Path(model_dir)
    _require_model_files(model_dir, tuple(folds), checkpoint, scan_id)
    liver, lesion = label_roles(json.loads((model_dir / "dataset.json").read_text()), scan_id)
    predictor = load_predictor(str(model_dir), tuple(folds), checkpoint, choose_device().type)
    # nnU-Net's SimpleITK reader hands the network (channel, z, y, x) and spacing in (z, y, x) order.
    voxels = sitk.GetArrayFromImage(image).astype(np.float32)[None]
    predicted = predictor.predict_single_npy_array(
        voxels, {"spacing": list(image.GetSpacing())[::-1]}, None, None, False
    )
    labels = to_project_labels(np.asarray(predicted), liver, lesion, scan_id)
    return SegmentationResult(
        labels=as_image(labels, image),
        method="nnunet",
        model_id=model_identity(model_dir, tuple(folds), checkpoint),
        resampled=False,
    )
