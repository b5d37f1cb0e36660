"""Scoring lesions with registered models, and what a reader must know about each score: the scan's
out-of-distribution notes and whether the patient was among the model's training patients."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from metorigin.core.schemas import SCAN_PREDICTIONS, conform
from metorigin.core.study import InclusionCriteria, StudySettings
from metorigin.imaging.cohort import exclusion_reasons
from metorigin.inference.registry import registered, registered_arm
from metorigin.study.arm import LesionData
from metorigin.study.scoring import (
    RegisteredModel,
    calls,
    input_settings_hash,
    load,
    require_inputs,
    require_present,
    unlike_training,
)


def score_lesions(
    models_root: Path,
    models: dict[str, RegisteredModel],
    registry: dict[str, RegisteredModel],
    lesions: LesionData,
    made_under: dict[str, set[str]],
) -> pd.DataFrame:
    """Every lesion of `lesions.wide` (one row per lesion: ids and features) scored by each model of
    `models`, as its arm scores (metorigin/arms/), the models' files from the store at `models_root`;
    a model built on others (the combined one) gets their probabilities, from the registry. Long:
    one row per lesion and model, with the model's id, arm and settings hash."""
    cache: dict[str, pd.Series] = {}
    chosen = {model.model_id: model for model in models.values()}
    wide = lesions.wide
    if wide.empty:  # a scan without an included lesion: nothing to score
        return pd.DataFrame()

    def probabilities(model_id: str) -> pd.Series:
        if model_id not in cache:
            model = chosen[model_id] if model_id in chosen else registered(registry, model_id)
            require_present(model)
            require_inputs(model, made_under)
            arm = registered_arm(model)
            fitted = load(models_root, model, arm.load)
            cache[model_id] = arm.score(fitted, model, lesions, probabilities).rename_axis("lesion_id")
        return cache[model_id]

    rows = []
    for model in models.values():
        probability = probabilities(model.model_id)
        rows.append(
            wide[["lesion_id", "scan_id", "patient_id"]].assign(
                probability=wide["lesion_id"].map(probability).to_numpy(),
                model_id=model.model_id,
                arm=model.arm,
                model=model.model,
                settings_hash=model.card.get("settings_hash"),
                input_settings_hash=input_settings_hash(model.input_settings),
            )
        )
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def distribution_notes(model: RegisteredModel, scan: dict, wide: pd.DataFrame) -> list[str]:
    """Why a scan may lie outside what the model learnt from: its acquisition outside the model's
    training inclusion criteria, or model features far from the training lesions'."""
    notes = []
    if model.card.get("inclusion"):
        criteria = InclusionCriteria(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in model.card["inclusion"].items()}
        )
        notes += [f"acquisition: {reason}" for reason in exclusion_reasons(scan, criteria)]
    reference = model.card.get("feature_reference")
    if reference and not wide.empty:
        far = unlike_training(wide, reference)
        if far:
            notes.append("features unlike the training lesions: " + ", ".join(far))
    return notes


def learnt_from(model: RegisteredModel, registry: dict[str, RegisteredModel]) -> set[str]:
    """The patients whose data shaped the model: its training and validation patients, and for a
    combined model its components' too."""
    ids = set(model.card.get("training_patient_ids", [])) | set(model.card.get("validation_patient_ids", []))
    for part in model.card.get("components", {}).values():
        ids |= learnt_from(registry[part], registry)
    return ids


def with_notes(
    predictions: pd.DataFrame,
    models: dict[str, RegisteredModel],
    registry: dict[str, RegisteredModel],
    scans: pd.DataFrame,
    lesions: LesionData,
) -> pd.DataFrame:
    """Each prediction row with its scan's out-of-distribution notes under that model (on the
    features its arm reads), and whether the patient was among the model's training or validation
    patients (then the number is not a test)."""
    notes = {}
    scan_of = lesions.wide.set_index("lesion_id")["scan_id"]
    for model in models.values():
        features = registered_arm(model).lesion_features(lesions)
        for scan in scans.to_dict("records"):
            ours = features[features["lesion_id"].map(scan_of).eq(scan["scan_id"]).to_numpy()]
            notes[(model.model_id, scan["scan_id"])] = "; ".join(distribution_notes(model, scan, ours)) or None
    seen = {m.model_id: learnt_from(m, registry) for m in models.values()}
    keys = list(zip(predictions["model_id"], predictions["scan_id"]))
    return predictions.assign(
        distribution_notes=[notes.get(k) for k in keys],
        out_of_distribution=[notes.get(k) is not None for k in keys],
        seen_in_training=[
            pid in seen.get(mid, set()) for mid, pid in zip(predictions["model_id"], predictions["patient_id"])
        ],
    )


def wide_features(features: pd.DataFrame) -> pd.DataFrame:
    """radiomics_features (long) -> one row per lesion, one column per feature."""
    if features.empty:
        return pd.DataFrame(columns=["lesion_id", "scan_id", "patient_id"])
    wide = features.pivot_table(
        index=["lesion_id", "scan_id", "patient_id"], columns="feature_name", values="feature_value", dropna=False
    )
    return wide.reset_index().rename_axis(columns=None)


def made_under(radiomics: pd.Series, slices: pd.Series, lesions: pd.Series) -> dict[str, set[str]]:
    """The settings hashes found on the rows to score, per step that made them (what `require_inputs` checks)."""
    return {
        step: set(hashes.dropna())
        for step, hashes in (("radiomics", radiomics), ("slices", slices), ("lesions", lesions))
    }


def finish(predictions: pd.DataFrame, study: StudySettings) -> pd.DataFrame:
    if predictions.empty:
        return conform(pd.DataFrame(columns=SCAN_PREDICTIONS.names), SCAN_PREDICTIONS)
    return conform(
        predictions.assign(predicted_label=lambda f: calls(f["probability"], study.label)),
        SCAN_PREDICTIONS,
    )


def call_rows(table: pd.DataFrame, study: StudySettings) -> list[dict]:
    """The scan's call per model, as `patient_predictions` makes it: the mean of its lesions' probabilities."""
    rows = []
    for (arm, model_id), group in table.groupby(["arm", "model_id"]):
        mean = float(group["probability"].mean())
        notes = group["distribution_notes"].dropna()
        rows.append(
            {
                "arm": arm,
                "model": model_id,
                "lesions": len(group),
                f"mean P({study.label.positive})": f"{mean:.3f}",
                "call": calls(pd.Series([mean]), study.label)[0] or "none (no probability)",
                "notes": notes.iat[0] if len(notes) else "",
            }
        )
    return rows
