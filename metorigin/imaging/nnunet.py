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
from metorigin.core.model_files import UnsafeModelFile, load_tensor_file
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
    """One predictor per model and process: loading weights costs more than predicting a small scan.

    nnU-Net's own `initialize_from_trained_model_folder` unpickles each checkpoint in full
    (`weights_only=False`), so a planted checkpoint would run its code. This is that method's
    loading (nnunetv2 2.8; tests/test_nnunet.py pins the version) with the checkpoints read as
    tensors and plain values, and the network classes plans.json names held to nnU-Net's own
    architectures and torch.nn layers; the predictor then gets them through `manual_initialization`.
    """
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = Path(model_dir)
    dataset_json = json.loads((folder / "dataset.json").read_text())
    plans_manager = PlansManager(json.loads((folder / "plans.json").read_text()))
    checkpoints = [load_tensor_file(folder / f"fold_{fold}" / checkpoint, "the nnU-Net checkpoint") for fold in folds]
    first = checkpoints[0]
    configuration = plans_manager.get_configuration(first["init_args"]["configuration"])
    _require_known_network(folder / "plans.json", configuration)
    network = recursive_find_trainer_class_by_name(first["trainer_name"]).build_network_architecture(
        plans_manager,
        configuration,
        determine_num_input_channels(plans_manager, configuration, dataset_json),
        plans_manager.get_label_manager(dataset_json).num_segmentation_heads,
        enable_deep_supervision=False,
    )
    parameters = [saved["network_weights"] for saved in checkpoints]
    network.load_state_dict(parameters[0])
    predictor = nnUNetPredictor(
        device=torch.device(device_type),
        use_mirroring=device_type == "cuda",
        perform_everything_on_device=device_type == "cuda",
        verbose=False,
        allow_tqdm=False,
    )
    predictor.manual_initialization(
        network,
        plans_manager,
        configuration,
        parameters,
        dataset_json,
        first["trainer_name"],
        first.get("inference_allowed_mirroring_axes"),
    )
    return predictor


NETWORK_MODULES = ("dynamic_network_architectures.",)  # the architectures nnU-Net plans name
LAYER_MODULES = ("torch.nn.",)  # the layer classes its `_kw_requires_import` arguments name


def _require_known_network(plans: Path, configuration) -> None:
    """nnU-Net imports whatever class plans.json names (`pydoc.locate`) and calls it with the
    plans' arguments: a name outside nnU-Net's architectures and torch's layers would be code."""
    named = {"network_class_name": configuration.network_arch_class_name}
    for key in configuration.network_arch_init_kwargs_req_import:
        value = configuration.network_arch_init_kwargs.get(key)
        if value is not None:
            named[key] = value
    for key, name in named.items():
        allowed = NETWORK_MODULES if key == "network_class_name" else LAYER_MODULES
        if not isinstance(name, str) or not name.startswith(allowed):
            raise UnsafeModelFile(
                plans,
                f"its architecture names {key} = {name!r}, outside {' and '.join(allowed)}, and metorigin "
                "never imports other code named by a model folder",
                "use the plans.json nnU-Net wrote for this model (its architectures live in "
                "dynamic_network_architectures, its layers in torch.nn)",
            )


def nnunet_segmentation(
    image: sitk.Image, model_dir: Path, folds: tuple, checkpoint: str, scan_id: str
) -> SegmentationResult:
    model_dir = Path(model_dir)
    _require_model_files(model_dir, tuple(folds), checkpoint, scan_id)
    liver, lesion = label_roles(json.loads((model_dir / "dataset.json").read_text()), scan_id)
    try:
        predictor = load_predictor(str(model_dir), tuple(folds), checkpoint, choose_device().type)
    except UnsafeModelFile as refused:
        raise ScanProcessingError(scan_id, "segmentation", f"{refused.path}: {refused.problem}", refused.fix) from None
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
