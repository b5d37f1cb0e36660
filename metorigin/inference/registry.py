"""The trained models in use: the registry's rows, the promotions log, and which model of each arm
scores new patients. Plain functions over a store: the Dagster assets (`models`, `model_promotions`,
`scan_predictions`) and external validation call them.

A promotion names a model id, whose file is content-addressed and checked by sha256 when it scores:
the promoted model of an arm never changes unless someone promotes another.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from dataclasses import replace
from datetime import datetime, timezone

import pandas as pd

from metorigin.arms import BY_NAME, PROMOTABLE
from metorigin.core.erased_models import removal_note
from metorigin.core.errors import MetoriginError
from metorigin.core.markdown import markdown_table
from metorigin.core.store import Store
from metorigin.study.arm import Arm
from metorigin.study.scoring import (
    RegisteredModel,
    ScoringRefused,
    feature_list_hash,
    file_sha256,
    input_settings_hash,
    model_path,
    read_card,
)

DELETED_FILE = "deleted before it was registered"  # file_sha256 of a model `forget` deleted that early
PROMOTIONS_LOG = "promotions.jsonl"  # <store>/promotions.jsonl: every promotion, appended, never rewritten
NO_MODEL = "no model is promoted"


class PromotionError(MetoriginError):
    """A promotion that cannot be made, or a promotions log that cannot be read."""


def registry_row(store: Store, metrics: pd.Series, known: dict, now: str) -> dict:
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
        # The sha256 first seen for this file: a file that changed since is refused when it scores, not
        # re-registered. A model retrained into another file (a pickle of an earlier metorigin
        # replaced by a data file) is registered with its new file. A deleted model keeps the sha256
        # its file had.
        "file_sha256": (earlier.get("model_file") == metrics["model_file"] and earlier.get("file_sha256"))
        or (removal_note(card) and DELETED_FILE)
        or file_sha256(model_path(store.root, metrics["model_file"], metrics["model_id"])),
        "needs_retraining": "needs_retraining" in card or "removed" in card,
        "removed": removal_note(card) or None,
    }


def read_promotions(store: Store) -> list[dict]:
    path = store.root / PROMOTIONS_LOG
    entries = []
    for number, line in enumerate(path.read_text().splitlines() if path.exists() else [], start=1):
        try:
            entries.append(json.loads(line)) if line.strip() else None
        except json.JSONDecodeError as error:
            raise PromotionError(
                f"{path} line {number} is not a JSON promotion ({error.msg}). Fix: restore the line from a backup "
                "(the log is appended to, never edited), or remove it and promote again"
            ) from error
    return entries


def promoted_ids(promotions: list[dict]) -> dict[str, str]:
    """arm -> the model promoted last for it."""
    return {p["arm"]: p["model_id"] for p in promotions}


def append_promotions(
    store: Store, registry: pd.DataFrame, promote: list[str], why: str, who: str, run_id: str
) -> list[dict]:
    """Checks every requested promotion first, then appends them all to the log (all or none)."""
    rows = registry.set_index("model_id", drop=False)
    unknown = [m for m in promote if m not in rows.index]
    if unknown:
        raise PromotionError(
            f"no model {', '.join(unknown)} in the registry: `metorigin models list --store {store.root}` lists the ids"
        )
    arms = [rows.loc[m, "arm"] for m in promote]
    # The card decides, not the registry's column: a `forget` killed before it updated the registry
    # has made the card a tombstone already.
    notes = {m: removal_note(read_card(store.root, rows.loc[m, "model_file"])) for m in promote}
    deleted = [f"{m} ({note})" for m, note in notes.items() if note]
    if deleted:
        raise PromotionError(
            f"{', '.join(deleted)}: a deleted model scores no one. Fix: retrain the study "
            "(`metorigin run --select 'group:study' --force`) and promote one of its new models"
        )
    if any(arm not in PROMOTABLE for arm in arms) or len(set(arms)) < len(arms):
        raise PromotionError(
            f"promote at most one model per arm, of the arms that score patients ({', '.join(PROMOTABLE)}); "
            f"asked: {', '.join(f'{m} ({a})' for m, a in zip(promote, arms))}"
        )
    if not why.strip():
        raise PromotionError(
            "a promotion needs a reason (`why`), for the log: e.g. 'best nested-CV AUC, reviewed by RS'"
        )
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    who = who or getpass.getuser()
    entries = [
        {
            "model_id": m,
            "arm": rows.loc[m, "arm"],
            "who": who,
            "when": when,
            "why": why.strip(),
            "file_sha256": rows.loc[m, "file_sha256"],
            "run_id": run_id,
        }
        for m in promote
    ]
    with open(store.root / PROMOTIONS_LOG, "a") as log:  # appended, never rewritten: the log is the history
        log.writelines(json.dumps(entry) + "\n" for entry in entries)
    return entries


def has_lake_table(store: Store, asset: str) -> bool:
    return bool(store.lake_partitions(asset))


def promoted_table(registry: pd.DataFrame, in_use: dict[str, str]) -> str:
    chosen = registry[registry["model_id"].isin(set(in_use.values()))]
    if chosen.empty:
        return f"{NO_MODEL} yet: `metorigin models promote MODEL_ID --why TEXT --store STORE`"
    return markdown_table(chosen[["arm", "model_id", "auc", "cv_auc"]].round(3).to_dict("records"))


def promoted_models(registry: dict[str, RegisteredModel], promotions: list[dict]) -> dict[str, RegisteredModel]:
    """arm -> the promoted model (`promotions`: the log, `read_promotions`), for the arms
    scan_predictions scores with, its file to be checked against the sha256 recorded when it was
    promoted (not the registry's, which a study run rereads)."""
    chosen = {}
    for entry in promotions:
        if entry["arm"] in PROMOTABLE:
            model = registered(registry, entry["model_id"])
            chosen[entry["arm"]] = replace(model, file_sha256=entry.get("file_sha256") or model.file_sha256)
    return {arm: model for arm, model in chosen.items() if not removal_note(model.card)}


def deleted_promoted(registry: dict[str, RegisteredModel], promotions: list[dict]) -> list[str]:
    """The models in use (each arm's last promotion) that `forget` deleted, with when and why: until
    the study is retrained and a model promoted, their arm scores no one."""
    last = {entry["arm"]: entry["model_id"] for entry in promotions if entry["arm"] in PROMOTABLE}
    return [
        f"{arm} {model_id} ({removal_note(registry[model_id].card)})"
        for arm, model_id in sorted(last.items())
        if model_id in registry and removal_note(registry[model_id].card)
    ]


def registered(registry: dict[str, RegisteredModel], model_id: str) -> RegisteredModel:
    if model_id not in registry:
        raise ScoringRefused(
            model_id,
            "it is not in this store's model registry (`models`)",
            "materialise `models` (a study run does), or promote a registered model",
        )
    return registry[model_id]


def registered_arm(model: RegisteredModel) -> Arm:
    """The arm that scores a registered model, or the refusal: a model of an arm this installation
    lacks (trained with a group's own arm), or of one whose models never score."""
    arm = BY_NAME.get(model.arm)
    if arm is None or arm.score is None:
        raise ScoringRefused(
            model.model_id,
            f"its arm {model.arm!r} is not one that scores here (arms: {', '.join(BY_NAME)})",
            f"install the module of the arm {model.arm!r} in metorigin/arms/, or score with another model",
        )
    return arm


def registry_models(store: Store) -> dict[str, RegisteredModel]:
    table = store.read_lake("models")
    return {
        row.model_id: RegisteredModel(
            row.model_id, row.arm, row.model, row.model_file, row.file_sha256, read_card(store.root, row.model_file)
        )
        for row in table.itertuples()
    }
