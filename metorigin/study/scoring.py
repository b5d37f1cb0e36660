"""Scoring lesions with frozen models: new patients of this store, or another centre's cohort.

Nothing here fits anything. A registered model is loaded from its file exactly as training saved
it (imputer, scaler, classifier and Platt scaling in one radiomics pipeline; the DenseNet's weights
and its prevalence shift; the combined model's stacker), after checking that the file is the one
the registry recorded and that the features it will see were made under the settings it was
trained on. A model that cannot honestly score these features is refused with the reason and the
fix; a scan that merely looks unlike the training data is scored and flagged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from metorigin.core.erased_models import removal_note
from metorigin.core.errors import MetoriginError
from metorigin.core.model_files import UnsafeModelFile, load_model_file

# A scan is flagged as unlike the training data when the mean of its lesions' value of a model
# feature lies more than this many training standard deviations from the training lesions' mean.
MAX_STANDARDISED_DIFFERENCE = 3.0


class ScoringRefused(MetoriginError):
    """A model that must not score these features (other extraction settings, missing features,
    a model file that is not the registered one)."""

    def __init__(self, model_id: str, problem: str, fix: str):
        self.model_id, self.problem, self.fix = model_id, problem, fix
        super().__init__(f"model {model_id}: {problem}. Fix: {fix}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_settings_hash(input_settings: dict[str, str]) -> str:
    """One hash of the extraction settings a model's inputs were made under (lesions, radiomics, slices)."""
    return hashlib.sha256(json.dumps(input_settings, sort_keys=True).encode()).hexdigest()[:12]


def feature_list_hash(features: list[str] | str) -> str:
    return hashlib.sha256(json.dumps(features).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RegisteredModel:
    """A row of the registry (`models`) with its card: what to load and what it expects."""

    model_id: str
    arm: str
    model: str  # the name Table 3 gives it (e.g. densenet121, knn)
    model_file: str  # relative to the store that holds it
    file_sha256: str
    card: dict = field(hash=False, compare=False)

    @property
    def input_settings(self) -> dict[str, str]:
        return self.card.get("input_settings", {})


def model_path(store_root: Path, model_file: str, model_id: str = "?") -> Path:
    """A registry's `model_file` as a path, which must lie in the store's artifacts/models folder
    once resolved (`..`, absolute paths and symlinks followed): a forged registry must not make
    the platform read, hash or load a file anywhere else."""
    models = (Path(store_root) / "artifacts" / "models").resolve()
    path = (Path(store_root) / model_file).resolve()
    if not path.is_relative_to(models):
        raise ScoringRefused(
            model_id,
            f"its model_file {model_file!r} lies outside the store's artifacts/models folder",
            "restore the store's models table and artifacts/models folder from a backup, or retrain the study",
        )
    return path


def read_card(store_root: Path, model_file: str) -> dict:
    return json.loads(model_path(store_root, model_file).with_suffix(".json").read_text())


def require_present(model: RegisteredModel) -> None:
    """Refuse a model `forget` deleted (its card is a tombstone): its file is gone, for good."""
    note = removal_note(model.card)
    if note:
        raise ScoringRefused(
            model.model_id,
            f"it was deleted ({note})",
            "retrain the study (`metorigin run --select 'group:study' --force`) and score with one of its new models",
        )


def require_inputs(model: RegisteredModel, made_under: dict[str, set[str]]) -> None:
    """Refuse a model whose inputs were made under other settings than these features (`made_under`:
    step -> the settings hashes found on the rows to score)."""
    if not model.input_settings:
        raise ScoringRefused(
            model.model_id,
            "its card does not record the settings its inputs were made under (it was trained by an older metorigin)",
            "retrain the study (`metorigin run --select 'group:study' --force`) and promote the new model",
        )
    for step, expected in sorted(model.input_settings.items()):
        found = made_under.get(step, set())
        if found and found != {expected}:
            raise ScoringRefused(
                model.model_id,
                f"it was trained on {step} settings {expected}, but these rows were made under "
                f"{', '.join(sorted(found))}",
                f"score with a model trained under the same {step} settings (retrain on this store and promote the "
                f"new model), or extract the features again under the model's study (its card: {model.model_file})",
            )


def require_features(model: RegisteredModel, features: list[str]) -> None:
    """Refuse a model (of an arm that scores named features) that needs a feature these rows lack."""
    wanted = model.card.get("features")
    if isinstance(wanted, list):
        missing = sorted(set(wanted) - set(features))
        if missing:
            raise ScoringRefused(
                model.model_id,
                f"{len(missing)} of its features are not in the feature store ({', '.join(missing[:5])}"
                f"{', ...' if len(missing) > 5 else ''})",
                "extract the features with the radiomics parameter file the model was trained with",
            )


@lru_cache(maxsize=64)
def _load(path: Path, sha256: str, read: Callable[[Path], Any]) -> Any:
    """A model file loaded once per process (a scan's run scores many lesions, a batch many scans)."""
    return read(path)


def load(store_root: Path, model: RegisteredModel, read: Callable[[Path], Any] = load_model_file) -> Any:
    """The fitted model (`read`: how its arm reads its file), after checking that its file is byte
    for byte the one registered: a promoted model never changes unless promoted again."""
    path = model_path(store_root, model.model_file, model.model_id)
    if not path.is_file():
        raise ScoringRefused(
            model.model_id, f"its file {path} is missing", "restore the store's artifacts/models folder from a backup"
        )
    if file_sha256(path) != model.file_sha256:
        raise ScoringRefused(
            model.model_id,
            f"its file {path} is not the one registered (sha256 differs)",
            "restore the original file, or retrain and promote a new model (after a retraining, promote "
            "the model again: its file is new)",
        )
    try:
        return _load(path, model.file_sha256, read)
    except UnsafeModelFile as refused:
        raise ScoringRefused(model.model_id, f"{refused.path}: {refused.problem}", refused.fix) from None


def calls(probability: pd.Series, label) -> list[str | None]:
    """The class at the cut-off 0.5 for each probability; None where there is none (e.g. a lesion
    without a slice for the DenseNet): a missing number never becomes a diagnosis."""
    from metorigin.study.evaluation import predicted_labels

    values = probability.to_numpy(dtype=float)
    named = predicted_labels(np.nan_to_num(values), label)
    return [name if np.isfinite(v) else None for name, v in zip(named, values)]


def feature_reference(train: pd.DataFrame) -> dict[str, list[float]]:
    """Per feature, the training lesions' mean and standard deviation: what `unlike_training` compares to."""
    return {name: [float(train[name].mean()), float(train[name].std())] for name in train.columns}


def unlike_training(features: pd.DataFrame, reference: dict[str, list[float]]) -> list[str]:
    """The model features whose mean over these lesions lies more than MAX_STANDARDISED_DIFFERENCE
    training standard deviations from the training mean, as 'name (d = 4.2)'."""
    found = []
    for name, (mean, sd) in reference.items():
        if name not in features or not np.isfinite(sd) or sd == 0:
            continue
        value = features[name].mean()
        difference = abs(value - mean) / sd
        if np.isfinite(difference) and difference > MAX_STANDARDISED_DIFFERENCE:
            found.append(f"{name} (d = {difference:.1f})")
    return found
