"""What `metorigin forget` does to the models: a model that learnt from the patient is deleted.

A fitted model can give its training rows back: a k-NN keeps them whole (undo its scaler and they
are the patient's feature vectors), a support-vector machine keeps its support vectors, trees keep
thresholds between training values, and a DenseNet's weights were shaped by the patient's slices.
No flag on a card changes that, so every model whose training or validation data held the patient
goes: its file is deleted and its card is kept as a tombstone (what it was, when and why it went,
none of what it learnt), so the registry, the promotions log and the report can still say which
model it was. A model that only tested on the patient learnt nothing of them and stays, marked for
retraining, since its test metrics counted the patient. Files in the models folder that no card
describes (the DenseNet's resume file, a training in progress) go too: nothing says whom they
learnt from.

The study comes back by retraining (`metorigin run --select 'group:study' --force`, or at once
when the study file sets `retrain_on_forget: true`): the models retrained without the patient get
new ids, since an id names its training data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from metorigin.core.files import atomic_path
from metorigin.core.lifecycle import MODELS, checked_path, patient_hash
from metorigin.core.store import UNPARTITIONED, Store

RETRAIN_WHY = "a patient of its test data was erased (consent withdrawn): its test metrics counted them"
REMOVED_WHY = "a patient it learnt from was erased (consent withdrawn)"
LEARNT_FROM = ("training_patient_ids", "validation_patient_ids")  # a card's lists of whom it learnt from
LEARNT_IN_SPLIT = {"train", "validation"}  # patient_split's sets a model learns from

# What a tombstone keeps of a card: what the model was, never what it learnt (a calibration's
# coefficients, feature means and deviations, a training history).
TOMBSTONE_KEYS = (
    "model_id",
    "arm",
    "model",
    "classifier",
    "resampler",
    "features",
    "params",
    "seed",
    "positive_class",
    "settings_hash",
    "input_settings",
    "components",
    "training_data_sha256",
    "training_patients",
    "training_lesions",
    "training_slices",
    *LEARNT_FROM,
    "test_patient_ids",
    "libraries",
)

Card = tuple[Path, dict]


@dataclass
class ModelErasure:
    """The models `forget` deleted (their cards now tombstones), those it kept marked for
    retraining, and the files deleted."""

    removed: dict[str, str] = field(default_factory=dict)  # model id -> the registry's note
    marked: list[str] = field(default_factory=list)
    files: int = 0


def removal_note(card: dict) -> str:
    """The registry's and the report's words for a tombstone; empty for a model in place."""
    removed = card.get("removed")
    return f"{removed['when'][:10]}: its file was deleted, {removed['why']}" if isinstance(removed, dict) else ""


def learnt_from(card: dict, patient_id: str, split_set: str | None) -> bool:
    """Whether the card's model learnt from the patient: its training or validation lists name them,
    or, for a card without lists (an older metorigin's), the patient is in a set models learn from."""
    lists = [card[key] for key in LEARNT_FROM if isinstance(card.get(key), list)]
    if lists:
        return any(patient_id in ids for ids in lists)
    return split_set in LEARNT_IN_SPLIT


def erase_models(
    store: Store, cards: list[Card], patient_id: str, split_set: str | None, when: datetime
) -> ModelErasure:
    """Delete every model that learnt from the patient (and every model built on a deleted one, as
    the combined arm is on its components), its card made a tombstone; mark for retraining the
    models the patient tested (in the split's test set, or named by a card's list); delete the files
    no card describes.

    A tombstone records the patient's hash, so that a `forget` killed half-way and run again
    reports, and finishes deleting, the models the first run had already made tombstones of."""
    erasure, digest = ModelErasure(), patient_hash(patient_id)
    ids = {str(card.get("model_id", path.stem)): card for path, card in cards}
    removed = {i for i, card in ids.items() if _erased_for(card) == digest or learnt_from(card, patient_id, split_set)}
    gone = removed | {i for i, card in ids.items() if "removed" in card}
    while stacked := {i for i, card in ids.items() if i not in gone and gone & set(_components(card))}:
        removed, gone = removed | stacked, gone | stacked  # a stacker saw its components' outputs
    tested = split_set == "test"
    for path, card in cards:
        identifier = str(card.get("model_id", path.stem))
        if identifier in removed:
            erasure.files += _delete_model_file(store, path)
            card = card if "removed" in card else _tombstone(card, when, digest)
            erasure.removed[identifier] = removal_note(card)
        elif "removed" in card:  # an earlier erasure's tombstone: only its lists change, if they name the patient
            if not _names(card, patient_id):
                continue
        elif tested or _names(card, patient_id):
            card.setdefault("needs_retraining", {"since": when.isoformat(), "why": RETRAIN_WHY})
            erasure.marked.append(identifier)
        else:
            continue
        for key in [k for k in card if k.endswith("_patient_ids") and isinstance(card[k], list)]:
            card[key] = ["erased" if pid == patient_id else pid for pid in card[key]]
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(card, indent=2, default=str))
    erasure.files += _delete_files_without_card(store, {path for path, _ in cards})
    return erasure


def mark_registry(store: Store, erasure: ModelErasure, cards: list[Card]) -> None:
    """The registry (`lake/models/all.parquet`) says so at once, before any retraining: a removed
    model's row gets `removed` (this erasure's, and any earlier one's a killed run left unsaid), a
    kept one `needs_retraining`. Rows are never deleted: a promotion names a model id, and the log
    keeps its history."""
    path = store.lake / "models" / f"{UNPARTITIONED}.parquet"
    notes = {**{str(c.get("model_id", p.stem)): removal_note(c) for p, c in cards if "removed" in c}, **erasure.removed}
    if not (notes or erasure.marked) or not path.is_file():
        return
    registry = pd.read_parquet(path)
    if "removed" not in registry.columns:
        registry["removed"] = pd.Series(None, index=registry.index, dtype=object)
    touched = registry["model_id"].isin([*notes, *erasure.marked])
    registry.loc[touched, "needs_retraining"] = True
    for model_id, note in notes.items():
        registry.loc[registry["model_id"] == model_id, "removed"] = note
    with atomic_path(checked_path(store, path)) as tmp:
        registry.to_parquet(tmp, index=False)


def _components(card: dict) -> list[str]:
    parts = card.get("components")
    return [str(v) for v in parts.values()] if isinstance(parts, dict) else []


def _names(card: dict, patient_id: str) -> bool:
    return any(patient_id in v for k, v in card.items() if k.endswith("_patient_ids") and isinstance(v, list))


def _erased_for(card: dict) -> str | None:
    removed = card.get("removed")
    return removed.get("patient_sha256") if isinstance(removed, dict) else None


def _tombstone(card: dict, when: datetime, digest: str) -> dict:
    kept = {key: card[key] for key in TOMBSTONE_KEYS if key in card}
    return {**kept, "removed": {"when": when.isoformat(), "why": REMOVED_WHY, "patient_sha256": digest}}


def _delete_model_file(store: Store, card_path: Path) -> int:
    """The model's file(s) beside its card (`<id>.skops`, `<id>.pt`: the same name but the suffix)."""
    files = [p for p in card_path.parent.iterdir() if p.is_file() and p.stem == card_path.stem and p != card_path]
    for path in files:
        checked_path(store, path).unlink()
    return len(files)


def _delete_files_without_card(store: Store, cards: set[Path]) -> int:
    """Model-folder files that belong to no card (a resume checkpoint): nothing says whom they learnt from."""
    folder = store.artifacts / MODELS
    if not folder.is_dir():
        return 0
    described = {(card.parent, card.stem) for card in cards}
    orphans = [
        path
        for path in folder.rglob("*")
        if path.is_file() and path.suffix != ".json" and (path.parent, path.stem) not in described
    ]
    for path in orphans:
        checked_path(store, path).unlink()
    return len(orphans)
