"""What several arms share: their models saved with cards, scoring named features with a frozen
pipeline, and Table 3 on an asset's page. Not an arm (discovery skips modules named `_...`), so no
arm depends on another arm's module."""

from __future__ import annotations

from typing import Any

import pandas as pd

from metorigin.core.store import Store
from metorigin.study.arm import Markdown
from metorigin.study.radiomics_arm import ArmResult
from metorigin.study.registry import save_model
from metorigin.study.scoring import require_features
from metorigin.study.tables import auc_metadata, table3


def saved_metrics(store: Store, result: ArmResult, settings_hash: str, origin: dict) -> pd.DataFrame:
    """Each fitted model and its card under artifacts/models/<arm>/; the metrics with their files."""
    folder = store.artifact_path("models", result.metrics["arm"].iloc[0])
    paths = {
        m.model_id: save_model(folder, m.model_id, m.pipeline, {**m.card, "settings_hash": settings_hash, **origin})
        for m in result.models
    }
    return result.metrics.assign(
        model_file=lambda f: f["model_id"].map(lambda i: store.relative(paths[i])), settings_hash=settings_hash
    )


def table3_metadata(metrics: pd.DataFrame) -> dict[str, Any]:
    """An arm's Table 3 rows on its asset page, and each AUC as a number the UI plots across runs."""
    return {"table_3": Markdown(table3(metrics)), **auc_metadata(metrics)}


def score_features(pipeline: Any, model: Any, features: pd.DataFrame) -> pd.Series:
    """The frozen pipeline (imputer, scaler, classifier, Platt scaling) on the model's own features,
    one row per lesion (`lesion_id` and the features)."""
    require_features(model, list(features.columns))
    if features.empty:
        return pd.Series(dtype=float, index=pd.Index([], name="lesion_id"))
    probability = pipeline.predict_proba(features[model.card["features"]])[:, 1]
    return pd.Series(probability, index=features["lesion_id"].to_numpy())
