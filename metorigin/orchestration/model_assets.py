"""The trained models in use: the registry, the promoted model of each arm, and scoring.

`models` records every model the study trained (one row each, kept across retrainings, so a
promoted model stays scorable after the study moves on) and `model_promotions` the promotions:
which model of an arm scores new patients, chosen by a person, logged with who, when and why. `scan_predictions` is
a per-scan asset of the `process_scan` runs: a scan that arrives after training is scored by the
promoted models in its own run, with nothing refitted. Its data depends on the promotions (their
data version is the promoted set), so promoting another model makes every scan's predictions stale
and the sensor or the next `metorigin run` scores them again.
"""

import getpass
import hashlib
import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from metorigin.core.errors import ScanProcessingError
from metorigin.core.markdown import markdown_table
from metorigin.core.schemas import MODEL_PROMOTIONS, MODELS, SCAN_PREDICTIONS, conform
from metorigin.core.store import Store
from metorigin.core.study import InclusionCriteria, StudySettings
from metorigin.imaging.cohort import exclusion_reasons
from metorigin.study.scoring import (
    SCORED_ARMS,
    RegisteredModel,
    ScoringRefused,
    calls,
    combined_from,
    densenet_probability,
    feature_list_hash,
    file_sha256,
    input_settings_hash,
    load,
    radiomics_probability,
    read_card,
    require_inputs,
    unlike_training,
)

from .cohort_assets import COHORT_GROUP
from .partitions import scan_partitions
from .placement import GPU_STEP
from .resources import SettingsResource, StoreResource
from .scan_assets import PER_SCAN_GROUP, failing_only_this_scan
from .study_assets import KINDS, STUDY_GROUP, slice_arrays

PROMOTIONS_LOG = "promotions.jsonl"  # <store>/promotions.jsonl: every promotion, appended, never rewritten
METRIC_TABLES = ("radiomics_metrics", "baseline_metrics", "densenet_metrics", "combined_metrics")
NO_MODEL = "no model is promoted"


class PromotionConfig(dg.Config):
    """Config of `model_promotions` (the `promote_models` job's launchpad): empty `promote` republishes the log."""

    promote: list[str] = []  # model ids of the `models` table (at most one per arm)
    why: str = ""  # required with `promote`: the reason, for the log
    who: str = ""  # default: the user running the step


def _registry_row(store: Store, metrics: pd.Series, known: dict, now: str) -> dict:
    card = read_card(store.root, metrics["model_file"])
    patients = card.get("training_patient_ids") or []
    earlier = known.get(metrics["model_id"], {})
    return {
        "model_id": metrics["model_id"],
        "arm": metrics["arm"],
        "model": metrics["model"],
        "resampler": metrics.get("resampler"),
        "created_at": earlier.get("created_at") or now,
        "training_cohort_sha256": hashlib.sha256(json.dumps(patients).encode()).hexdigest()[:16],
        "training_patients": len(patients),
        "training_data_sha256": card.get("training_data_sha256"),
        "settings_hash": card.get("settings_hash"),
        "input_settings_hash": input_settings_hash(card.get("input_settings", {})),
        "feature_list_hash": feature_list_hash(card.get("features", [])),
        "auc": metrics.get("auc"),
        "auc_ci_low": metrics.get("auc_ci_low"),
        "auc_ci_high": metrics.get("auc_ci_high"),
        "accuracy": metrics.get("accuracy"),
        "patient_auc": metrics.get("patient_auc"),
        "cv_auc": metrics.get("cv_auc"),
        "cv_auc_ci_low": metrics.get("cv_auc_ci_low"),
        "cv_auc_ci_high": metrics.get("cv_auc_ci_high"),
        "model_file": metrics["model_file"],
        # The sha256 first seen: a file that changed since is refused when it scores, not re-registered.
        "file_sha256": earlier.get("file_sha256") or file_sha256(store.root / metrics["model_file"]),
        "needs_retraining": "needs_retraining" in card,
    }


def read_promotions(store: Store) -> list[dict]:
    path = store.root / PROMOTIONS_LOG
    entries = []
    for number, line in enumerate(path.read_text().splitlines() if path.exists() else [], start=1):
        try:
            entries.append(json.loads(line)) if line.strip() else None
        except json.JSONDecodeError as error:
            raise dg.Failure(
                f"{path} line {number} is not a JSON promotion ({error.msg}). Fix: restore the line from a backup "
                "(the log is appended to, never edited), or remove it and promote again"
            ) from error
    return entries


def promoted_ids(promotions: list[dict]) -> dict[str, str]:
    """arm -> the model promoted last for it."""
    return {p["arm"]: p["model_id"] for p in promotions}


def _promote(store: Store, registry: pd.DataFrame, config: PromotionConfig, run_id: str) -> list[dict]:
    """Checks every requested promotion first, then appends them all to the log (all or none)."""
    rows = registry.set_index("model_id", drop=False)
    unknown = [m for m in config.promote if m not in rows.index]
    if unknown:
        raise dg.Failure(
            f"no model {', '.join(unknown)} in the registry: `metorigin models list --store {store.root}` lists the ids"
        )
    arms = [rows.loc[m, "arm"] for m in config.promote]
    if any(arm not in SCORED_ARMS for arm in arms) or len(set(arms)) < len(arms):
        raise dg.Failure(
            f"promote at most one model per arm, of the arms that score patients ({', '.join(SCORED_ARMS)}); "
            f"asked: {', '.join(f'{m} ({a})' for m, a in zip(config.promote, arms))}"
        )
    if not config.why.strip():
        raise dg.Failure("a promotion needs a reason (`why`), for the log: e.g. 'best nested-CV AUC, reviewed by RS'")
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    who = config.who or getpass.getuser()
    entries = [
        {
            "model_id": m,
            "arm": rows.loc[m, "arm"],
            "who": who,
            "when": when,
            "why": config.why.strip(),
            "file_sha256": rows.loc[m, "file_sha256"],
            "run_id": run_id,
        }
        for m in config.promote
    ]
    with open(store.root / PROMOTIONS_LOG, "a") as log:  # appended, never rewritten: the log is the history
        log.writelines(json.dumps(entry) + "\n" for entry in entries)
    return entries


@dg.asset(group_name=STUDY_GROUP, kinds=KINDS, ins={name: dg.AssetIn(name) for name in METRIC_TABLES})
def models(context: dg.AssetExecutionContext, store: StoreResource, **metrics) -> pd.DataFrame:
    """The registry: every model the study trained, kept across retrainings (a promoted model stays
    scorable when the study moves on), with its card's provenance and its file's sha256."""
    target = store.store()
    known = (
        target.read_lake("models").set_index("model_id", drop=False).to_dict("index") if _has(target, "models") else {}
    )
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = dict(known)
    for table in metrics.values():
        for _, row in table.iterrows():
            rows[row["model_id"]] = _registry_row(target, row, known, now)
    # reindex: rows registered by older code may lack a column added since, or hold one dropped
    frame = pd.DataFrame(list(rows.values())).reindex(columns=MODELS.names)
    registry = conform(frame.fillna({"needs_retraining": False}), MODELS)
    registry = registry.sort_values(["arm", "model_id"])
    in_use = promoted_ids(read_promotions(target))
    context.add_output_metadata(
        {"n_models": len(registry), "promoted": dg.MetadataValue.md(_promoted_table(registry, in_use))}
    )
    return registry


# In the cohort group, so that ingest (which always runs, before the per-scan runs) keeps it
# materialised: the per-scan predictions depend on it, and an upstream never materialised would
# leave them stale for ever.
@dg.asset(group_name=COHORT_GROUP, kinds=KINDS)
def model_promotions(context: dg.AssetExecutionContext, config: PromotionConfig, store: StoreResource):
    """Every promotion, in order (`<store>/promotions.jsonl`); with `promote` (the `promote_models`
    job's launchpad, or `metorigin models promote`) it first appends new ones. Its data version is
    the promoted set: promoting another model makes every scan's predictions stale.

    A promotion names a model id, whose file is content-addressed and checked by sha256 when it
    scores: the promoted model of an arm never changes unless someone promotes another."""
    target = store.store()
    if config.promote:
        if not _has(target, "models"):
            raise dg.Failure("no model is registered yet: train the study first (`metorigin run`)")
        for entry in _promote(target, target.read_lake("models"), config, context.run_id):
            context.log.info(f"promoted {entry['model_id']} ({entry['arm']}): {entry['why']} ({entry['who']})")
    promotions = read_promotions(target)
    in_use = promoted_ids(promotions)
    version = dg.DataVersion(hashlib.sha256(json.dumps(sorted(in_use.items())).encode()).hexdigest()[:24])
    in_use_text = ", ".join(f"{arm}: {mid}" for arm, mid in sorted(in_use.items())) or NO_MODEL
    rows = [{"sequence": n, **entry} for n, entry in enumerate(promotions, start=1)]
    log = conform(pd.DataFrame(rows, columns=MODEL_PROMOTIONS.names), MODEL_PROMOTIONS)
    return dg.Output(log, data_version=version, metadata={"in_use": in_use_text})


def _has(store: Store, asset: str) -> bool:
    return bool(store.lake_partitions(asset))


def _promoted_table(registry: pd.DataFrame, in_use: dict[str, str]) -> str:
    chosen = registry[registry["model_id"].isin(set(in_use.values()))]
    if chosen.empty:
        return f"{NO_MODEL} yet: `metorigin models promote MODEL_ID --why TEXT --store STORE`"
    return markdown_table(chosen[["arm", "model_id", "auc", "cv_auc"]].round(3).to_dict("records"))


def promoted_models(store: Store, registry: dict[str, RegisteredModel]) -> dict[str, RegisteredModel]:
    """arm -> the promoted model, for the arms scan_predictions scores with, its file to be checked
    against the sha256 recorded when it was promoted (not the registry's, which a study run rereads)."""
    chosen = {}
    for entry in read_promotions(store):
        if entry["arm"] in SCORED_ARMS:
            model = registered(registry, entry["model_id"])
            chosen[entry["arm"]] = replace(model, file_sha256=entry.get("file_sha256") or model.file_sha256)
    return chosen


def registered(registry: dict[str, RegisteredModel], model_id: str) -> RegisteredModel:
    if model_id not in registry:
        raise ScoringRefused(
            model_id,
            "it is not in this store's model registry (`models`)",
            "materialise `models` (a study run does), or promote a registered model",
        )
    return registry[model_id]


def registry_models(store: Store) -> dict[str, RegisteredModel]:
    table = store.read_lake("models")
    return {
        row.model_id: RegisteredModel(
            row.model_id, row.arm, row.model, row.model_file, row.file_sha256, read_card(store.root, row.model_file)
        )
        for row in table.itertuples()
    }


def scan_images(root: Path, slices: pd.DataFrame, card: dict) -> tuple[pd.DataFrame, np.ndarray]:
    """The slices the DenseNet scores (its card's slices per lesion and image size), as at training."""
    from metorigin.study.densenet import pick_slices

    params = card["params"]
    chosen = pick_slices(slices, params.get("max_slices_per_lesion"))
    return chosen, slice_arrays(root, chosen, params["image_size"])


def score_lesions(
    models_root: Path,
    data_root: Path,
    models: dict[str, RegisteredModel],
    registry: dict[str, RegisteredModel],
    wide: pd.DataFrame,
    slices: pd.DataFrame,
    made_under: dict[str, set[str]],
) -> pd.DataFrame:
    """Every lesion of `wide` (one row per lesion: ids and features) scored by each model of `models`
    (a combined model also needs its two components, from the registry), the models from the store
    at `models_root`, the slice files from the one at `data_root`. Long: one row per lesion and
    model, with the model's id, arm and settings hash."""
    cache: dict[str, pd.Series] = {}
    if wide.empty:  # a scan without an included lesion: nothing to score
        return pd.DataFrame()

    def probabilities(model: RegisteredModel) -> pd.Series:
        if model.model_id in cache:
            return cache[model.model_id]
        require_inputs(model, made_under, list(wide.columns))
        fitted = load(models_root, model)
        if model.arm == "combined":
            parts = model.card["components"]
            result = combined_from(
                fitted,
                probabilities(registered(registry, parts["radiomics"])),
                probabilities(registered(registry, parts["densenet"])),
            )
        elif model.arm == "densenet":
            chosen, images = scan_images(data_root, slices, model.card)
            result = densenet_probability(fitted, model, chosen, images)
        else:
            result = pd.Series(radiomics_probability(fitted, model, wide), index=wide["lesion_id"].to_numpy())
        cache[model.model_id] = result.rename_axis("lesion_id")
        return cache[model.model_id]

    rows = []
    for model in models.values():
        probability = probabilities(model)
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
    wide: pd.DataFrame,
) -> pd.DataFrame:
    """Each prediction row with its scan's out-of-distribution notes under that model, and whether the
    patient was among the model's training or validation patients (then the number is not a test)."""
    notes = {}
    for model in models.values():
        for scan in scans.to_dict("records"):
            lesions = wide[wide["scan_id"] == scan["scan_id"]]
            notes[(model.model_id, scan["scan_id"])] = "; ".join(distribution_notes(model, scan, lesions)) or None
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


@dg.asset(
    partitions_def=scan_partitions,
    group_name=PER_SCAN_GROUP,
    kinds={"python", "parquet"},
    op_tags=GPU_STEP,  # the DenseNet's forward passes
    deps=[dg.AssetKey("model_promotions"), dg.AssetKey("lesions")],
    ins={"radiomics_features": dg.AssetIn("radiomics_features"), "lesion_slices": dg.AssetIn("lesion_slices")},
)
def scan_predictions(
    context: dg.AssetExecutionContext,
    store: StoreResource,
    settings: SettingsResource,
    radiomics_features: pd.DataFrame,
    lesion_slices: pd.DataFrame,
) -> pd.DataFrame:
    """Every included lesion of the scan scored by the promoted radiomics model, DenseNet and combined
    model (frozen: nothing is refitted), with the scan's out-of-distribution notes; the patient-level
    call is `patient_predictions` in the feature store. No promoted model: no rows, and a note."""
    target, study, scan_id = store.store(), settings.settings(), context.partition_key
    registry = registry_models(target) if _has(target, "models") else {}
    lesions = target.read_lake("lesions", [scan_id])
    wide = wide_features(radiomics_features)
    scans = target.read_lake("scans")
    with failing_only_this_scan():
        try:
            models = promoted_models(target, registry)
            if not models:
                context.log.info(f"{scan_id}: {NO_MODEL}; nothing scored (metorigin models promote MODEL_ID ...)")
                return finish(pd.DataFrame(), study)
            predictions = score_lesions(
                target.root,
                target.root,
                models,
                registry,
                wide,
                lesion_slices,
                made_under(
                    radiomics_features["settings_hash"], lesion_slices["settings_hash"], lesions["settings_hash"]
                ),
            )
        except ScoringRefused as refused:
            raise ScanProcessingError(scan_id, "scoring", refused.problem, refused.fix) from refused
    if predictions.empty:
        return finish(predictions, study)
    predictions = with_notes(predictions, models, registry, scans[scans["scan_id"] == scan_id], wide)
    table = finish(predictions, study)
    context.add_output_metadata(
        {
            "n_lesions": int(wide["lesion_id"].nunique()),
            "models": ", ".join(sorted(table["model_id"].unique())),
            "out_of_distribution": bool(table["out_of_distribution"].any()),
            "predictions": dg.MetadataValue.md(markdown_table(_call_rows(table, study))),
        }
    )
    return table


def _call_rows(table: pd.DataFrame, study: StudySettings) -> list[dict]:
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
