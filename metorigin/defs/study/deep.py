"""The DenseNet-121 arm and the combined model (radiomics + DenseNet), as Dagster assets."""

from dataclasses import asdict

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from metorigin.core.devices import choose_device
from metorigin.core.markdown import markdown_table
from metorigin.defs.common.names import KINDS, STUDY_GROUP, TRAINING_MATRIX
from metorigin.defs.common.resources import SettingsResource, StoreResource
from metorigin.imaging.slices import crop_description
from metorigin.inference.lesions import slice_arrays
from metorigin.study.combined import best_radiomics_model, stack
from metorigin.study.evaluation import labels, predicted_labels, test_metrics
from metorigin.study.registry import data_hash, model_id, provenance, save_model
from metorigin.study.split import (
    TEST,
    TRAIN,
    VALIDATION,
)
from metorigin.study.tables import auc_metadata, table3


@dg.multi_asset(
    group_name=STUDY_GROUP,
    deps=[TRAINING_MATRIX, dg.AssetKey(["feature_store", "lesion_slices"])],
    outs={
        "densenet_metrics": dg.AssetOut(kinds=KINDS, description="Table 3, DenseNet-121 row"),
        "densenet_predictions": dg.AssetOut(kinds=KINDS, description="per-lesion mean of slice probabilities"),
    },
)
def densenet(
    context: dg.AssetExecutionContext,
    store: StoreResource,
    feature_store: DuckDBResource,
    settings: SettingsResource,
    patient_split: pd.DataFrame,
):
    """DenseNet-121 from scratch on the training patients' slices; the validation patients pick the
    epoch; the test patients' lesions are scored once, at the end."""
    # torch and MONAI load here, not with the module: every run process loads these definitions, and
    # per-scan runs (most of them) never need a network.
    import torch

    from metorigin.study.densenet import (
        EpochLog,
        at_training_prevalence,
        lesion_probabilities,
        model_params,
        pick_slices,
        predict,
        train,
    )

    study = settings.settings()
    config = study.densenet
    with feature_store.get_connection() as con:
        index = con.execute("""select s.lesion_id, s.scan_id, s.patient_id, t.label, s.slice_index, s.array_row,
                                      s.lesion_area_px, s.slices_file
                               from lesion_slices s join training_matrix t using (lesion_id)
                               order by s.lesion_id, s.slice_index""").df()
    rows = pick_slices(index, config.max_slices_per_lesion).merge(patient_split[["patient_id", "set"]], on="patient_id")
    images = slice_arrays(store.store().root, rows, config.image_size)
    part = {name: rows.index[rows["set"] == name].to_numpy() for name in (TRAIN, VALIDATION, TEST)}
    y = labels(rows, study.label)
    context.log.info(
        f"DenseNet-121 on {len(part[TRAIN])} training, {len(part[VALIDATION])} validation and "
        f"{len(part[TEST])} test slices at {config.image_size} px, {config.epochs} epochs, "
        f"device {choose_device(config.device)}"
    )
    checkpoint = store.store().artifact_path("models", "densenet") / "checkpoint.pt"

    def progress(log: EpochLog) -> None:
        context.log.info(
            f"epoch {log.epoch}/{config.epochs}: loss {log.loss:.4f}, validation AUC "
            f"{log.validation_auc:.3f} [{log.validation_auc_ci_low:.2f}, {log.validation_auc_ci_high:.2f}], "
            f"{log.images_per_s:.1f} images/s, {log.seconds:.0f} s"
        )

    result = train(
        images[part[TRAIN]],
        y[part[TRAIN]],
        images[part[VALIDATION]],
        y[part[VALIDATION]],
        rows.loc[part[VALIDATION], "lesion_id"].to_numpy(),
        config,
        study.seed,
        checkpoint,
        progress,
        val_patients=rows.loc[part[VALIDATION], "patient_id"].to_numpy(),
    )
    best = result.history[result.best_epoch - 1]
    # How much the chosen epoch owes to which validation patients: the epochs whose validation AUC
    # lies within the best epoch's patient-bootstrap interval could as well have been chosen.
    rivals = sum(h.validation_auc >= best.validation_auc_ci_low for h in result.history)
    scored = []
    for evaluation, name in (("validation", VALIDATION), ("test", TEST)):
        chosen = rows.loc[part[name]]
        slices = at_training_prevalence(predict(result.model, images[part[name]], result.device), y[part[TRAIN]])
        per_lesion = lesion_probabilities(chosen["lesion_id"].to_numpy(), slices)
        lesions = chosen.drop_duplicates("lesion_id").set_index("lesion_id")[["scan_id", "patient_id", "label"]]
        scored.append(lesions.assign(probability=per_lesion, evaluation=evaluation).reset_index())
    card = {
        "arm": "densenet",
        "features": crop_description(study.slices, config.image_size),
        "params": model_params(config),
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
    identifier = model_id("densenet121", card)
    path = save_model(checkpoint.parent, identifier, result.model.state_dict(), card, write=torch.save, suffix=".pt")
    predictions = pd.concat(scored, ignore_index=True).assign(
        model_id=identifier,
        arm="densenet",
        model="densenet121",
        resampler=None,
        predicted_label=lambda f: predicted_labels(f["probability"], study.label),
        settings_hash=card["settings_hash"],
    )
    tested = predictions[predictions["evaluation"] == "test"].assign(y_true=lambda f: labels(f, study.label))
    metrics = pd.DataFrame(
        [
            {
                "model_id": identifier,
                "arm": "densenet",
                "model": "densenet121",
                "resampler": None,
                **test_metrics(tested, study.models.bootstrap_resamples, study.seed),
                "validation_auc": result.best_validation_auc,
                "validation_auc_ci_low": best.validation_auc_ci_low,
                "validation_auc_ci_high": best.validation_auc_ci_high,
                "best_epoch": result.best_epoch,
                "epochs_within_interval": rivals,
                "epochs": config.epochs,
                "image_size": config.image_size,
                "params": str(model_params(config)),
                "calibration": card["calibration"]["method"],
                "seed": study.seed,
                "training_data_sha256": card["training_data_sha256"],
                "model_file": store.store().relative(path),
                "settings_hash": card["settings_hash"],
            }
        ]
    )
    yield dg.Output(
        metrics,
        "densenet_metrics",
        metadata={
            "table_3": dg.MetadataValue.md(table3(metrics)),
            **auc_metadata(metrics),
            "best_epoch": result.best_epoch,
            "epochs_within_interval": rivals,
            "epochs": dg.MetadataValue.md(
                markdown_table(
                    [
                        {
                            "epoch": h.epoch,
                            "loss": f"{h.loss:.4f}",
                            "validation AUC [95% CI]": f"{h.validation_auc:.3f} "
                            f"[{h.validation_auc_ci_low:.2f}, {h.validation_auc_ci_high:.2f}]",
                        }
                        for h in result.history
                    ]
                )
            ),
            "device": str(result.device),
        },
    )
    yield dg.Output(predictions, "densenet_predictions", metadata={"n_test_lesions": len(tested)})


@dg.multi_asset(
    group_name=STUDY_GROUP,
    outs={
        "combined_metrics": dg.AssetOut(kinds=KINDS, description="Table 3, radiomics + DenseNet row"),
        "combined_predictions": dg.AssetOut(kinds=KINDS, description="stacked per-lesion probabilities"),
    },
)
def combined_model(
    context: dg.AssetExecutionContext,
    store: StoreResource,
    settings: SettingsResource,
    radiomics_metrics: pd.DataFrame,
    radiomics_predictions: pd.DataFrame,
    densenet_predictions: pd.DataFrame,
):
    """The best radiomics model (by nested CV on the training patients) stacked with the DenseNet."""
    study = settings.settings()
    best = best_radiomics_model(radiomics_metrics)
    densenet_id = densenet_predictions["model_id"].iloc[0]
    stacked = stack(
        radiomics_predictions[radiomics_predictions["model_id"] == best["model_id"]],
        densenet_predictions,
        study.label,
        study.seed,
    )
    fit = stacked.fit_rows
    card = {
        "arm": "combined",
        "features": [f"logit P({best['model_id']})", f"logit P({densenet_id})"],
        "params": stacked.how,
        "seed": study.seed,
        "positive_class": study.label.positive,
        "settings_hash": study.step_hash("combined"),
        "components": {"radiomics": best["model_id"], "densenet": densenet_id},
        # A fitted stacker learnt from the validation patients; a mean learnt from no one.
        "training_patient_ids": sorted(fit["patient_id"].unique()) if stacked.stacker is not None else [],
        **provenance(study, "lesions", "radiomics", "slices"),
        "training_data_sha256": data_hash(
            fit[["lesion_id", "probability_radiomics", "probability_densenet"]], labels(fit, study.label)
        ),
    }
    identifier = model_id(f"combined_{best['model']}_{best['resampler']}_densenet121", card)
    folder = store.store().artifact_path("models", "combined")
    path = save_model(folder, identifier, stacked.stacker if stacked.stacker is not None else stacked.how, card)
    name = f"{best['model']}+densenet121"
    columns = ["lesion_id", "scan_id", "patient_id", "label", "evaluation", "probability"]
    predictions = stacked.predictions[columns].assign(
        model_id=identifier,
        arm="combined",
        model=name,
        resampler=best["resampler"],
        predicted_label=lambda f: predicted_labels(f["probability"], study.label),
        settings_hash=card["settings_hash"],
    )
    tested = predictions[predictions["evaluation"] == "test"].assign(y_true=lambda f: labels(f, study.label))
    metrics = pd.DataFrame(
        [
            {
                "model_id": identifier,
                "arm": "combined",
                "model": name,
                "resampler": best["resampler"],
                **test_metrics(tested, study.models.bootstrap_resamples, study.seed),
                "params": str(stacked.how),
                "seed": study.seed,
                "training_data_sha256": card["training_data_sha256"],
                "model_file": store.store().relative(path),
                "settings_hash": card["settings_hash"],
            }
        ]
    )
    context.log.info(f"combined {best['model_id']} with {densenet_id}: {stacked.how['method']}")
    yield dg.Output(
        metrics,
        "combined_metrics",
        metadata={
            "table_3": dg.MetadataValue.md(table3(metrics)),
            **auc_metadata(metrics),
            "method": stacked.how["method"],
        },
    )
    yield dg.Output(predictions, "combined_predictions", metadata={"n_test_lesions": len(tested)})


# Where each arm's second threshold is chosen: never on the test patients.
