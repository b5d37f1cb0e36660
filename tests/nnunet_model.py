"""Build a tiny nnU-Net v2 model folder the way nnU-Net writes one: fingerprint, plans, checkpoint.

The network is nnU-Net's own 3d_fullres architecture with few features per stage and untrained
weights; its output layer is set to favour the liver class so that its prediction is known
(liver everywhere nnU-Net looks), which lets a test check geometry and labels end to end.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import SimpleITK as sitk

from metorigin.core.config import scoped_environment

DATASET_ID = 901
DATASET = f"Dataset{DATASET_ID}_TinyLiver"


def build_tiny_model(work: Path, cases: list[tuple[Path, Path]]) -> Path:
    # nnU-Net reads its folders from the environment when its modules are imported (nnunetv2.paths).
    folders = {f"nnUNet_{name}": str(work / name) for name in ("raw", "preprocessed", "results")}
    with scoped_environment(**folders):
        return _build(work, cases)


def _build(work: Path, cases: list[tuple[Path, Path]]) -> Path:
    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    raw = work / "raw" / DATASET
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    for i, (image, mask) in enumerate(cases):
        sitk.WriteImage(sitk.ReadImage(str(image)), str(raw / "imagesTr" / f"case_{i:03d}_0000.nii.gz"))
        labels = sitk.Resample(
            sitk.ReadImage(str(mask)), sitk.ReadImage(str(image)), sitk.Transform(), sitk.sitkNearestNeighbor
        )
        sitk.WriteImage(labels, str(raw / "labelsTr" / f"case_{i:03d}.nii.gz"))
    dataset_json = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "liver": 1, "tumor": 2},
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
    }
    (raw / "dataset.json").write_text(json.dumps(dataset_json))

    extract_fingerprints([DATASET_ID], num_processes=1, show_progress_bar=False, verbose=False)
    plan_experiments([DATASET_ID])
    preprocess([DATASET_ID], configurations=("3d_fullres",), num_processes=(1,), verbose=False)
    pre = work / "preprocessed" / DATASET
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    arch["features_per_stage"] = [4 * 2 ** min(i, 2) for i in range(len(arch["features_per_stage"]))]
    # nnU-Net 2.8's trainer pops this key from the plans it is given (its CLI adds it).
    trainer = nnUNetTrainer(
        {**plans, "continue_training": False}, "3d_fullres", 0, dataset_json, device=torch.device("cpu")
    )
    trainer.initialize()
    with torch.no_grad():
        for layer in trainer.network.decoder.seg_layers:
            layer.weight.zero_()
            layer.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))

    model = work / "model" / f"{DATASET}__nnUNetTrainer__nnUNetPlans__3d_fullres"
    (model / "fold_0").mkdir(parents=True)
    trainer.save_checkpoint(str(model / "fold_0" / "checkpoint_final.pth"))
    (model / "plans.json").write_text(json.dumps(plans))
    (model / "dataset.json").write_text(json.dumps(dataset_json))
    shutil.copy(pre / "dataset_fingerprint.json", model / "dataset_fingerprint.json")
    return model
