"""Fitted models on disk with the card that says exactly what produced them.

A number in `model_metrics` is only as trustworthy as our ability to say which model made it: each
model file sits beside a JSON card with its features, parameters, seed, library versions and a
hash of the exact training rows, and the metrics row carries the model's id and path.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from metorigin.core.files import atomic_path
from metorigin.core.model_files import MODEL_SUFFIX, save_model_file
from metorigin.core.study import StudySettings, protocol

LIBRARIES = ("metorigin", "numpy", "pandas", "scikit-learn", "imbalanced-learn", "xgboost", "torch", "monai")


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def data_hash(frame: pd.DataFrame, labels: np.ndarray | None = None) -> str:
    """sha256 of the rows (index excluded, column names and order included) and labels."""
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    if labels is not None:
        digest.update(np.asarray(labels).tobytes())
    return digest.hexdigest()


def model_id(name: str, card: dict[str, Any]) -> str:
    """Stable for the same data, features, parameters and seed; new when any of them changes."""
    key = json.dumps(
        {k: card[k] for k in ("features", "params", "seed", "training_data_sha256")}, sort_keys=True, default=str
    )
    return f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def save_model(
    folder: Path,
    identifier: str,
    model: Any,
    card: dict[str, Any],
    write: Callable[[Any, Path], None] = save_model_file,
    suffix: str = MODEL_SUFFIX,
) -> Path:
    """Atomic writes of the model and its card (`<id><suffix>`, `<id>.json`); returns the model path.

    A model file already saved under the id is kept as it is: the id names the data, features,
    parameters and seed, so a refit under the same id is the same model (the seed fixes it), and
    the registered file, whose sha256 scoring checks, never changes under a promotion. The card is
    written again (what it records may have grown)."""
    path = folder / f"{identifier}{suffix}"
    if not path.is_file():
        with atomic_path(path) as tmp:
            write(model, tmp)
    with atomic_path(folder / f"{identifier}.json") as tmp:
        tmp.write_text(
            json.dumps({"model_id": identifier, **card, "libraries": library_versions()}, indent=2, default=str)
        )
    return path


def provenance(study: StudySettings, *inputs: str) -> dict:
    """What a model card records so that the model can later score other rows honestly: the settings
    hash of each step that made its inputs (scoring refuses rows made otherwise), and the acquisition
    protocol of its training scans (scoring flags a scan outside it)."""
    return {
        "input_settings": {step: study.step_hash(step) for step in inputs},
        "inclusion": protocol(study, "inclusion"),
        "label_classes": list(study.label.classes),
    }
