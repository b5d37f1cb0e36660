"""The DenseNet-121 arm: trained from scratch on the training patients' lesion slices, its epoch
chosen on the validation patients, the test patients scored once at the end
(metorigin/study/densenet.py).

torch and MONAI load inside the functions, never with the module: every run process loads the
arms, and per-scan runs (most of them) need a network only when a DenseNet is promoted.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from metorigin.core.devices import choose_device
from metorigin.core.markdown import markdown_table
from metorigin.core.model_files import load_tensor_file
from metorigin.imaging.slices import crop_description, load_slices
from metorigin.study.arm import Arm, ArmInputs, ArmOutput, LesionData, Markdown, ReportFigure, ReportSection
from metorigin.study.evaluation import labels, one_models_rows, test_metrics
from metorigin.study.registry import data_hash, model_id, provenance, save_model
from metorigin.study.split import TEST, TRAIN, VALIDATION
from metorigin.study.tables import auc_metadata, table3

SLICES = """select s.lesion_id, s.scan_id, s.patient_id, t.label, s.slice_index, s.array_row,
                   s.lesion_area_px, s.slices_file
            from lesion_slices s join training_matrix t using (lesion_id)
            order by s.lesion_id, s.slice_index"""
MODEL = "densenet121"


def slice_arrays(root: Path, rows: pd.DataFrame, size: int) -> np.ndarray:
    """The chosen slices (`rows`, indexed 0..n-1) from the per-scan .npz files of the store at `root`,
    resized once, in the rows' order; one file in memory at a time. Training and scoring share it."""
    from metorigin.study.densenet import resize

    groups = list(rows.groupby("slices_file", sort=False))
    if not groups:
        return np.empty((0, size, size), np.uint8)
    stacked = np.concatenate(
        [resize(load_slices(root / file)[group["array_row"].to_numpy()], size) for file, group in groups]
    )
    return stacked[np.argsort(np.concatenate([group.index.to_numpy() for _, group in groups]))]


def _epoch_line(log: Any, epochs: int) -> str:
    return (
        f"epoch {log.epoch}/{epochs}: loss {log.loss:.4f}, validation AUC {log.validation_auc:.3f} "
        f"[{log.validation_auc_ci_low:.2f}, {log.validation_auc_ci_high:.2f}], {log.images_per_s:.1f} images/s, "
        f"{log.seconds:.0f} s"
    )


def _scored(result: Any, rows: pd.DataFrame, images: np.ndarray, part: dict, y: np.ndarray) -> pd.DataFrame:
    """The validation and test lesions' probabilities: the mean of their slices', moved to the
    training slices' prevalence."""
    from metorigin.study.densenet import at_training_prevalence, lesion_probabilities, predict

    scored = []
    for evaluation, name in (("validation", VALIDATION), ("test", TEST)):
        chosen = rows.loc[part[name]]
        slices = at_training_prevalence(predict(result.model, images[part[name]], result.device), y[part[TRAIN]])
        per_lesion = lesion_probabilities(chosen["lesion_id"].to_numpy(), slices)
        lesions = chosen.drop_duplicates("lesion_id").set_index("lesion_id")[["scan_id", "patient_id", "label"]]
        scored.append(lesions.assign(probability=per_lesion, evaluation=evaluation).reset_index())
    return pd.concat(scored, ignore_index=True)


def _card(inputs: ArmInputs, result: Any, rows: pd.DataFrame, part: dict, y: np.ndarray) -> dict:
    from metorigin.study.densenet import model_params

    study = inputs.study
    return {
        "arm": "densenet",
        "features": crop_description(study.slices, study.densenet.image_size),
        "params": model_params(study.densenet),
        "seed": study.seed,
        "best_epoch": result.best_epoch,
        "best_validation_auc": result.best_validation_auc,
        "calibration": {
            "method": "odds moved from the class-weighted (balanced) output to the training slices' prevalence",
            "positive_share": float(np.mean(y[part[TRAIN]])),
        },
        "history": [asdict(h) for h in result.history],
        "training_data_sha256": data_hash(rows.loc[part[TRAIN], ["lesion_id", "slice_index"]], y[part[TRAIN]]),
        "training_slices": int(len(part[TRAIN])),
        "training_patient_ids": sorted(rows.loc[part[TRAIN], "patient_id"].unique()),
        "validation_patient_ids": sorted(rows.loc[part[VALIDATION], "patient_id"].unique()),
        "positive_class": study.label.positive,
        "settings_hash": study.step_hash("densenet"),
        **provenance(study, "lesions", "slices"),
    }


def _metrics(inputs: ArmInputs, result: Any, card: dict, tested: pd.DataFrame, identity: dict, path: Path) -> dict:
    study = inputs.study
    best = result.history[result.best_epoch - 1]
    return {
        **identity,
        **test_metrics(tested, study.models.bootstrap_resamples, study.seed),
        "validation_auc": result.best_validation_auc,
        "validation_auc_ci_low": best.validation_auc_ci_low,
        "validation_auc_ci_high": best.validation_auc_ci_high,
        "best_epoch": result.best_epoch,
        # How much the chosen epoch owes to which validation patients: the epochs whose validation AUC
        # lies within the best epoch's patient-bootstrap interval could as well have been chosen.
        "epochs_within_interval": sum(h.validation_auc >= best.validation_auc_ci_low for h in result.history),
        "epochs": study.densenet.epochs,
        "image_size": study.densenet.image_size,
        "params": str(card["params"]),
        "calibration": card["calibration"]["method"],
        "seed": study.seed,
        "training_data_sha256": card["training_data_sha256"],
        "model_file": inputs.store.relative(path),
        "settings_hash": card["settings_hash"],
    }


def _history_table(history: list) -> Markdown:
    return Markdown(
        markdown_table(
            [
                {
                    "epoch": h.epoch,
                    "loss": f"{h.loss:.4f}",
                    "validation AUC [95% CI]": f"{h.validation_auc:.3f} "
                    f"[{h.validation_auc_ci_low:.2f}, {h.validation_auc_ci_high:.2f}]",
                }
                for h in history
            ]
        )
    )


def train(inputs: ArmInputs) -> ArmOutput:
    """DenseNet-121 from scratch on the training patients' slices; the validation patients pick the
    epoch; the test patients' lesions are scored once, at the end."""
    import torch

    from metorigin.study.densenet import pick_slices
    from metorigin.study.densenet import train as train_network

    study, config = inputs.study, inputs.study.densenet
    split = inputs.tables["patient_split"][["patient_id", "set"]]
    rows = pick_slices(inputs.query(SLICES), config.max_slices_per_lesion).merge(split, on="patient_id")
    images = slice_arrays(inputs.store.root, rows, config.image_size)
    part = {name: rows.index[rows["set"] == name].to_numpy() for name in (TRAIN, VALIDATION, TEST)}
    y = labels(rows, study.label)
    inputs.log(
        f"DenseNet-121 on {len(part[TRAIN])} training, {len(part[VALIDATION])} validation and "
        f"{len(part[TEST])} test slices at {config.image_size} px, {config.epochs} epochs, "
        f"device {choose_device(config.device)}"
    )
    checkpoint = inputs.store.artifact_path("models", "densenet") / "checkpoint.pt"
    result = train_network(
        images[part[TRAIN]],
        y[part[TRAIN]],
        images[part[VALIDATION]],
        y[part[VALIDATION]],
        rows.loc[part[VALIDATION], "lesion_id"].to_numpy(),
        config,
        study.seed,
        checkpoint,
        lambda log: inputs.log(_epoch_line(log, config.epochs)),
        val_patients=rows.loc[part[VALIDATION], "patient_id"].to_numpy(),
    )
    card = _card(inputs, result, rows, part, y)
    identifier = model_id(MODEL, card)
    path = save_model(checkpoint.parent, identifier, result.model.state_dict(), card, write=torch.save, suffix=".pt")
    identity = {"model_id": identifier, "arm": "densenet", "model": MODEL, "resampler": None}
    scored = _scored(result, rows, images, part, y)
    predictions, tested = one_models_rows(scored, identity, study.label, card["settings_hash"])
    metrics = pd.DataFrame([_metrics(inputs, result, card, tested, identity, path)])
    return ArmOutput(
        metrics=metrics,
        predictions=predictions,
        metadata={
            "densenet_metrics": {
                "table_3": Markdown(table3(metrics)),
                **auc_metadata(metrics),
                "best_epoch": result.best_epoch,
                "epochs_within_interval": int(metrics["epochs_within_interval"].iloc[0]),
                "epochs": _history_table(result.history),
                "device": str(result.device),
            },
            "densenet_predictions": {"n_test_lesions": len(tested)},
        },
    )


def read_network(path: Path) -> Any:
    """The saved weights in a fresh DenseNet-121 on the CPU (a tensor file, never code)."""
    import torch

    from metorigin.study.densenet import build_model

    network = build_model(torch.device("cpu"), 0)
    network.load_state_dict(load_tensor_file(path, "the DenseNet model file"))
    return network.eval()


def score(network: Any, model: Any, lesions: LesionData, component: Callable[[str], pd.Series]) -> pd.Series:
    """Per lesion: the mean of its slices' probabilities (the card's slices per lesion and image
    size, as at training), moved to the training prevalence as at training."""
    import torch

    from metorigin.study.densenet import lesion_probabilities, pick_slices, predict, shift_to_prevalence

    params = model.card["params"]
    chosen = pick_slices(lesions.slices, params.get("max_slices_per_lesion"))
    if chosen.empty:
        return pd.Series(dtype=float, index=pd.Index([], name="lesion_id"))
    images = slice_arrays(lesions.data_root, chosen, params["image_size"])
    raw = predict(network, images, torch.device("cpu"))
    shifted = shift_to_prevalence(raw, model.card["calibration"]["positive_share"])
    return lesion_probabilities(chosen["lesion_id"].to_numpy(), shifted)


def training_curves(history: pd.DataFrame, best_epoch: int) -> Figure:
    """The DenseNet's loss and validation AUC (with its interval) per epoch, the chosen epoch marked."""
    fig = Figure(figsize=(7, 2.6), layout="constrained")
    loss, auc = fig.subplots(1, 2)
    loss.plot(history["epoch"], history["loss"], "o-")
    loss.set(xlabel="epoch", ylabel="training loss")
    auc.plot(history["epoch"], history["validation_auc"], "o-", color="#ff7f0e")
    if {"validation_auc_ci_low", "validation_auc_ci_high"} <= set(history):
        auc.fill_between(
            history["epoch"],
            history["validation_auc_ci_low"],
            history["validation_auc_ci_high"],
            color="#ff7f0e",
            alpha=0.2,
        )
    auc.set(xlabel="epoch", ylabel="validation AUC (patient bootstrap 95%)", ylim=(0, 1))
    for ax in (loss, auc):
        ax.axvline(best_epoch, color="black", linestyle=":", label=f"chosen epoch {best_epoch}")
        ax.xaxis.get_major_locator().set_params(integer=True)
    auc.legend(loc="lower right")
    return fig


def training_figures(rows: pd.DataFrame, cards: list[dict]) -> list[ReportFigure]:
    card = cards[0]
    if "history" not in card:  # a tombstone: `forget` deleted the model, and its training history with it
        return []
    history = pd.DataFrame(card["history"])
    return [
        ReportFigure(
            "densenet_training",
            "DenseNet-121 training curves",
            "Training loss and validation AUC (95% patient-bootstrap interval) per epoch; the model kept is the "
            f"one of epoch {card['best_epoch']} (dotted), chosen on the validation patients.",
            training_curves(history, int(card["best_epoch"])),
            history,
        )
    ]


ARM = Arm(
    name="densenet",
    title="DenseNet",
    asset="densenet",
    train=train,
    settings_step="densenet",
    # 2: probabilities moved from the class weights' balance to the training prevalence.
    revisions={"densenet_metrics": 3, "densenet_predictions": 3},
    threshold_from=("validation", "validation patients"),
    descriptions={
        "densenet_metrics": "Table 3, DenseNet-121 row",
        "densenet_predictions": "per-lesion mean of slice probabilities",
    },
    reads=("patient_split",),
    feature_store=("training_matrix", "lesion_slices"),
    score=score,
    load=read_network,
    report_sections=(ReportSection("densenet", "DenseNet-121 training", training_figures),),
)
