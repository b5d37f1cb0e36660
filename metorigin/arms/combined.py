"""The combined arm: the best radiomics model (by nested CV on the training patients) stacked with
the DenseNet on the validation patients, or their mean when those are too few
(metorigin/study/combined.py)."""

from __future__ import annotations

from typing import Any, Callable

import pandas as pd

from metorigin.arms._shared import table3_metadata
from metorigin.study.arm import Arm, ArmInputs, ArmOutput, LesionData
from metorigin.study.combined import best_radiomics_model, combined_probability, stack
from metorigin.study.evaluation import labels, one_models_rows, test_metrics
from metorigin.study.registry import data_hash, model_id, provenance, save_model

COLUMNS = ["lesion_id", "scan_id", "patient_id", "label", "evaluation", "probability"]


def _card(inputs: ArmInputs, best: pd.Series, densenet_id: str, stacked: Any) -> dict:
    study, fit = inputs.study, stacked.fit_rows
    return {
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


def train(inputs: ArmInputs) -> ArmOutput:
    """The best radiomics model (by nested CV on the training patients) stacked with the DenseNet."""
    study, tables = inputs.study, inputs.tables
    best = best_radiomics_model(tables["radiomics_metrics"])
    radiomics, densenet = tables["radiomics_predictions"], tables["densenet_predictions"]
    densenet_id = densenet["model_id"].iloc[0]
    stacked = stack(radiomics[radiomics["model_id"] == best["model_id"]], densenet, study.label, study.seed)
    card = _card(inputs, best, densenet_id, stacked)
    identifier = model_id(f"combined_{best['model']}_{best['resampler']}_densenet121", card)
    saved = stacked.stacker if stacked.stacker is not None else stacked.how
    path = save_model(inputs.store.artifact_path("models", "combined"), identifier, saved, card)
    name = f"{best['model']}+densenet121"
    identity = {"model_id": identifier, "arm": "combined", "model": name, "resampler": best["resampler"]}
    predictions, tested = one_models_rows(stacked.predictions[COLUMNS], identity, study.label, card["settings_hash"])
    metrics = pd.DataFrame(
        [
            {
                **identity,
                **test_metrics(tested, study.models.bootstrap_resamples, study.seed),
                "params": str(stacked.how),
                "seed": study.seed,
                "training_data_sha256": card["training_data_sha256"],
                "model_file": inputs.store.relative(path),
                "settings_hash": card["settings_hash"],
            }
        ]
    )
    inputs.log(f"combined {best['model_id']} with {densenet_id}: {stacked.how['method']}")
    return ArmOutput(
        metrics=metrics,
        predictions=predictions,
        metadata={
            "combined_metrics": {**table3_metadata(metrics), "method": stacked.how["method"]},
            "combined_predictions": {"n_test_lesions": len(tested)},
        },
    )


def score(stacker: Any, model: Any, lesions: LesionData, component: Callable[[str], pd.Series]) -> pd.Series:
    """The saved stacker (or the description of a plain mean) on its two components' probabilities."""
    parts = model.card["components"]
    pairs = pd.DataFrame(
        {"probability_radiomics": component(parts["radiomics"]), "probability_densenet": component(parts["densenet"])}
    ).dropna()
    fitted = stacker if not isinstance(stacker, dict) else None
    return pd.Series(combined_probability(fitted, pairs), index=pairs.index)


ARM = Arm(
    name="combined",
    title="Radiomics + DenseNet-121",
    asset="combined_model",
    train=train,
    settings_step="combined",
    revisions={"combined_metrics": 5, "combined_predictions": 5},  # 3: as densenet 2; 4, 5: as radiomics 4, 5
    threshold_from=("validation", "validation patients"),  # in-sample when they fitted a stacker
    descriptions={
        "combined_metrics": "Table 3, radiomics + DenseNet row",
        "combined_predictions": "stacked per-lesion probabilities",
    },
    reads=("radiomics_metrics", "radiomics_predictions", "densenet_predictions"),
    feature_store=(),
    score=score,
)
