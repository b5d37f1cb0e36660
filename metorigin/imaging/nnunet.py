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
    (`weights_only=False`), imports whatever classes plans.json names, and builds the network with
    the trainer class the checkpoint names: a planted model folder would run its code. This is that
    method's loading (nnunetv2 2.8; tests/test_nnunet.py pins the version) made safe: checkpoints
    read as tensors and plain values, every name plans.json gives checked first (`_require_known`),
    and the network built by nnU-Net's default trainer from the plans (a trainer variant that
    builds another network gives weights that do not fit it, and is refused). The predictor then
    gets them through its `manual_initialization`.
    """
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = Path(model_dir)
    dataset_json = json.loads((folder / "dataset.json").read_text())
    plans_manager = PlansManager(json.loads((folder / "plans.json").read_text()))
    checkpoints = [load_tensor_file(folder / f"fold_{fold}" / checkpoint, "the nnU-Net checkpoint") for fold in folds]
    first = checkpoints[0]
    configuration = plans_manager.get_configuration(first["init_args"]["configuration"])
    _require_known(folder / "plans.json", plans_manager, configuration)
    network = nnUNetTrainer.build_network_architecture(
        plans_manager,
        configuration,
        determine_num_input_channels(plans_manager, configuration, dataset_json),
        plans_manager.get_label_manager(dataset_json).num_segmentation_heads,
        enable_deep_supervision=False,
    )
    parameters = [saved["network_weights"] for saved in checkpoints]
    try:
        network.load_state_dict(parameters[0])
    except RuntimeError as error:
        raise UnsafeModelFile(
            folder / f"fold_{folds[0]}" / checkpoint,
            f"its weights do not fit the network plans.json describes (trainer {first['trainer_name']!r}; "
            f"{str(error).splitlines()[0]})",
            "use a model trained by nnU-Net's own trainers on these plans (a trainer that builds its own "
            "network is code metorigin does not run)",
        ) from None
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


# nnU-Net imports the classes plans.json names (`pydoc.locate`, which imports any module and
# follows any attribute path) and calls them with the plans' arguments: only these exact names are
# let through, so nothing else is imported or called.
NETWORK_CLASSES = frozenset(
    f"dynamic_network_architectures.architectures.{name}"
    for name in ("unet.PlainConvUNet", "unet.ResidualEncoderUNet", "residual_unet.ResidualUNet")
)
_LAYERS = {
    "conv": ("Conv1d", "Conv2d", "Conv3d"),
    "instancenorm": ("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"),
    "batchnorm": ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d"),
    "dropout": ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d"),
    "activation": ("LeakyReLU", "ReLU", "PReLU", "ELU", "GELU"),
}
LAYER_CLASSES = frozenset(
    name
    for module, classes in _LAYERS.items()
    for c in classes
    for name in (f"torch.nn.{c}", f"torch.nn.modules.{module}.{c}")
)


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def _require_known(plans: Path, plans_manager, configuration) -> None:
    """Every name in plans.json that nnU-Net turns into code is one it ships: the network and its
    layers by exact name (every string among the network's arguments is a layer name in nnU-Net's
    plans), the preprocessing, resampling and label handling by what nnU-Net's own lookup (over
    its own package) resolves them to. (Normalisation schemes are looked up in a fixed mapping.)"""
    named = [("network_class_name", configuration.network_arch_class_name, NETWORK_CLASSES)]
    named += [("arch_kwargs", name, LAYER_CLASSES) for name in _strings(configuration.network_arch_init_kwargs)]
    for key, name, allowed in named:
        if name not in allowed:
            raise UnsafeModelFile(
                plans,
                f"its architecture names {key} {name!r}, which is not one of nnU-Net's networks or torch.nn's "
                "layers that metorigin builds, and metorigin never imports other code a model folder names",
                "use the plans.json nnU-Net wrote for this model",
            )
    resolved = {
        "preprocessor_name": lambda: configuration.preprocessor_class,
        "resampling_fn_data": lambda: configuration.resampling_fn_data.func,
        "resampling_fn_seg": lambda: configuration.resampling_fn_seg.func,
        "resampling_fn_probabilities": lambda: configuration.resampling_fn_probabilities.func,
        "label_manager": lambda: plans_manager.label_manager_class,
    }
    for key, find in resolved.items():
        try:
            found = find()
        except Exception as error:  # nnU-Net's lookups raise RuntimeError, KeyError, AttributeError...
            raise UnsafeModelFile(plans, f"nnU-Net cannot resolve its {key} ({error})", PLANS_FIX) from None
        if not (callable(found) and getattr(found, "__module__", "").startswith("nnunetv2.")):
            raise UnsafeModelFile(plans, f"its {key} resolves to {found!r}, not to nnU-Net's own code", PLANS_FIX)


PLANS_FIX = "use the plans.json nnU-Net wrote for this model"


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
    except (KeyError, TypeError, ValueError, RuntimeError) as error:  # a checkpoint or plans missing a key
        raise ScanProcessingError(
            scan_id,
            "segmentation",
            f"the nnU-Net model in {model_dir} cannot be loaded ({type(error).__name__}: {error})",
            "point --nnunet-model at the folder nnU-Net wrote for a trained model (plans.json, dataset.json, "
            "fold_N/checkpoint_final.pth), unchanged",
        ) from None
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
