"""External validation: another store's frozen models on this store's labelled cohort, as plain
functions (the `external_validation` asset, defs/validation/, reads and writes around them).

Every model of the models store's latest training (Table 3's rows) scores this cohort's labelled
lesions as it was saved; nothing is refitted. `external_metrics` has Table 3's columns with
patient-bootstrap intervals, computed exactly as Table 3's, and the models' own test AUC beside them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from metorigin.arms import ARMS, METRIC_TABLES
from metorigin.core.errors import MetoriginError
from metorigin.core.store import Store
from metorigin.core.study import StudySettings
from metorigin.inference.lesions import learnt_from, made_under, score_lesions, with_notes
from metorigin.inference.registry import registered, registry_models
from metorigin.study.arm import LesionData
from metorigin.study.evaluation import labels, test_metrics
from metorigin.study.scoring import calls

# What external_rows reads of this store's feature store, by name.
QUERIES = {
    "lesions": "select * from lesions where included",
    "slices": "select s.* from lesion_slices s semi join training_matrix t using (lesion_id) "
    "order by lesion_id, slice_index",
    "radiomics": "select distinct settings_hash from radiomics_features",
    "scans": "select * from scans where included",
}


def trained_models(models_store: Store) -> pd.DataFrame:
    """Table 3's rows of the models store: the models of its latest training, but those of an arm
    this installation declares without `score` (its rows are not models that score)."""
    frames = [models_store.read_lake(name) for name in METRIC_TABLES if models_store.lake_partitions(name)]
    if not frames or not models_store.lake_partitions("models"):
        raise MetoriginError(
            f"{models_store.root} holds no registered models: train there first (`metorigin run`), then validate"
        )
    metrics = pd.concat(frames, ignore_index=True)
    unscored = {arm.name for arm in ARMS if arm.score is None}
    return metrics[~metrics["arm"].isin(unscored)].reset_index(drop=True)


def external_rows(
    models_root: Path,
    data_root: Path,
    metrics: pd.DataFrame,
    matrix: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
) -> pd.DataFrame:
    """Every lesion of `matrix` scored by every model of `metrics` (with its out-of-distribution notes);
    `tables`: this store's included `lesions`, their `slices`, the `scans`, and the `radiomics`
    features' settings hashes (QUERIES)."""
    registry = registry_models(Store(models_root))
    models = {mid: registered(registry, mid) for mid in metrics["model_id"]}
    lesions, slices = tables["lesions"], tables["slices"]
    under = made_under(tables["radiomics"]["settings_hash"], slices["settings_hash"], lesions["settings_hash"])
    scored = LesionData(matrix, lesions, slices, data_root)
    predictions = score_lesions(models_root, models, registry, scored, under)
    predictions = with_notes(predictions, models, registry, tables["scans"], scored)
    return predictions.merge(matrix[["lesion_id", "label"]], on="lesion_id")


def shared_patients(predictions: pd.DataFrame, models_store: Store, metrics: pd.DataFrame) -> list[str]:
    """This cohort's patient ids that are among the models' training or validation patients."""
    registry = registry_models(models_store)
    learnt = set().union(*(learnt_from(registry[m], registry) for m in metrics["model_id"]))
    return sorted(set(predictions["patient_id"]) & learnt)


def labelled_predictions(
    predictions: pd.DataFrame, metrics: pd.DataFrame, study: StudySettings, origin: str
) -> pd.DataFrame:
    """The rows of `external_predictions`: each with its model's resampler, its call and where the
    models came from (`.`: this store's own; another centre's patient ids say nothing about who
    trained the models, so `seen_in_training` is false for them)."""
    if origin != ".":
        predictions = predictions.assign(seen_in_training=False)
    return predictions.merge(metrics[["model_id", "resampler"]], on="model_id").assign(
        predicted_label=lambda f: calls(f["probability"], study.label), models_store=origin
    )


def external_metrics(
    predictions: pd.DataFrame, metrics: pd.DataFrame, study: StudySettings, shared: int, origin: str
) -> pd.DataFrame:
    """One row per model: Table 3's metrics on this cohort, beside the model's own test AUC and
    nested-CV estimate from its training."""
    rows = []
    for model_id, group in predictions.groupby("model_id", sort=True):
        internal = metrics[metrics["model_id"] == model_id].iloc[0]
        scored = group.dropna(subset=["probability"]).assign(y_true=lambda f: labels(f, study.label))
        rows.append(
            {
                "model_id": model_id,
                "arm": internal["arm"],
                "model": internal["model"],
                "resampler": internal.get("resampler"),
                **test_metrics(scored, study.models.bootstrap_resamples, study.seed),
                "internal_auc": internal["auc"],
                # The model's own nested-CV estimate on its training patients, as in its Table 3 row.
                **{k: internal.get(k) for k in ("cv_auc", "cv_auc_ci_low", "cv_auc_ci_high")},
                "out_of_distribution_scans": int(group.loc[group["out_of_distribution"], "scan_id"].nunique()),
                "shared_patient_ids": shared,
                "models_store": origin,
                "model_file": internal["model_file"],
                "settings_hash": internal["settings_hash"],
            }
        )
    return pd.DataFrame(rows)
