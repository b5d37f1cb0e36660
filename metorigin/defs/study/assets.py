"""The study's first steps as Dagster assets: the patient split, the feature selection, the radiomics
arm and the baselines (the DenseNet and the combined model: deep.py; Table 3 and robustness:
evaluation.py).

They read `training_matrix` from the published feature store through a read-only `DuckDBResource`
and write their results to the lake; dbt then exposes them in DuckDB (`metorigin/sql/models/results/`),
like every other table.
"""

import json

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from metorigin.core.files import atomic_path
from metorigin.core.lifecycle import patient_hash
from metorigin.core.markdown import markdown_table
from metorigin.core.store import Store
from metorigin.defs.common.names import KINDS, STUDY_GROUP, TRAINING_MATRIX
from metorigin.defs.common.resources import SettingsResource, StoreResource, read_training_matrix
from metorigin.study.baselines import baseline_matrix, fit_baselines
from metorigin.study.evaluation import labels
from metorigin.study.radiomics_arm import ArmResult, feature_columns, fit_radiomics_arm, fitting_settings, split_effect
from metorigin.study.registry import provenance, save_model
from metorigin.study.selection import drop_correlated, feature_importance_table, permutation_ranking
from metorigin.study.split import (
    TEST,
    extend_split,
    holds_out_every_class,
    split_patients,
    training_patients,
)
from metorigin.study.tables import auc_metadata, table2, table3

SPLIT_LEDGER = ("split", "assignments.json")  # artifacts/split/: every patient's set, ever


def _ledger(store: Store, settings_hash: str) -> dict[str, str]:
    """patient sha256 -> set, for every patient this store's study ever assigned (those who left too),
    under the same split settings and seed; keyed by hash, so it names no one (`metorigin forget`)."""
    path = store.artifact_path(*SPLIT_LEDGER)
    if not path.exists():
        return {}
    ledger = json.loads(path.read_text())
    return ledger["sets"] if ledger.get("settings_hash") == settings_hash else {}


def _write_ledger(store: Store, settings_hash: str, ledger: dict[str, str]) -> None:
    with atomic_path(store.artifact_path(*SPLIT_LEDGER)) as tmp:
        tmp.write_text(json.dumps({"settings_hash": settings_hash, "sets": dict(sorted(ledger.items()))}, indent=1))


@dg.asset(group_name=STUDY_GROUP, deps=[TRAINING_MATRIX], kinds=KINDS)
def patient_split(
    context: dg.AssetExecutionContext, feature_store: DuckDBResource, store: StoreResource, settings: SettingsResource
) -> pd.DataFrame:
    """Train / validation / test patients, drawn with the seed; the same test patients for both arms.

    Drawn once: when the cohort changes, the stored split is carried over (`extend_split`), so a
    retrained study never moves a patient between sets; only new patients are assigned."""
    study = settings.settings()
    matrix = read_training_matrix(feature_store)
    lesions = matrix.groupby("patient_id").size().rename("n_lesions").reset_index()
    settings_hash, patients = study.step_hash("split"), matrix[["patient_id", "label"]]
    ledger = _ledger(store.store(), settings_hash)
    assigned = {
        pid: ledger[patient_hash(pid)] for pid in patients["patient_id"].unique() if patient_hash(pid) in ledger
    }
    if assigned and holds_out_every_class(assigned, patients):
        split = extend_split(assigned, patients, study.split, study.seed)
        context.log.info(f"split carried over: {split['patient_id'].nunique() - len(assigned)} new patient(s) assigned")
    else:
        if assigned:
            context.log.warning("the stored test set has no patient of some class left: a new split is drawn")
        split = split_patients(patients, study.split, study.seed)
    _write_ledger(
        store.store(), settings_hash, ledger | {patient_hash(p): s for p, s in zip(split["patient_id"], split["set"])}
    )
    split = split.merge(lesions, on="patient_id")
    counts = split.groupby(["set", "label"]).size().rename("patients").reset_index()
    context.add_output_metadata(
        {
            "patients": dg.MetadataValue.md(markdown_table(counts.to_dict("records"))),
            "n_test_patients": int((split["set"] == TEST).sum()),
            "seed": study.seed,
        }
    )
    return split.assign(seed=study.seed, settings_hash=study.step_hash("split"))


@dg.asset(group_name=STUDY_GROUP, deps=[TRAINING_MATRIX], kinds=KINDS)
def feature_importance(
    context: dg.AssetExecutionContext,
    feature_store: DuckDBResource,
    settings: SettingsResource,
    patient_split: pd.DataFrame,
) -> pd.DataFrame:
    """Table 2: redundancy filter (|r| > 0.6) and permutation importance, on training patients only."""
    study = settings.settings()
    matrix = read_training_matrix(feature_store)
    train = matrix[matrix["patient_id"].isin(training_patients(patient_split))].reset_index(drop=True)
    models = fitting_settings(study.models, train)
    redundancy = drop_correlated(train[feature_columns(train)], models.max_abs_correlation)
    ranking = permutation_ranking(
        train[redundancy.kept],
        labels(train, study.label),
        train["patient_id"].to_numpy(),
        study.seed,
        models.importance_repeats,
        models.tuning_folds,
        n_jobs=models.workers,
    )
    table = feature_importance_table(redundancy, ranking).assign(settings_hash=study.step_hash("selection"))
    context.add_output_metadata(
        {"table_2": dg.MetadataValue.md(table2(table)), "n_features": len(table), "n_kept": len(redundancy.kept)}
    )
    return table


@dg.multi_asset(
    group_name=STUDY_GROUP,
    deps=[TRAINING_MATRIX],
    outs={
        "radiomics_metrics": dg.AssetOut(kinds=KINDS, description="Table 3, radiomics arm: one row per model"),
        "radiomics_predictions": dg.AssetOut(kinds=KINDS, description="per-lesion probabilities of every model"),
        "radiomics_cv_folds": dg.AssetOut(
            kinds=KINDS, description="nested CV on the training patients: one row per model, repeat and outer fold"
        ),
        "radiomics_cv_predictions": dg.AssetOut(
            kinds=KINDS, description="nested CV: every training lesion's held-out probability, per model and repeat"
        ),
    },
)
def radiomics_models(
    context: dg.AssetExecutionContext,
    store: StoreResource,
    feature_store: DuckDBResource,
    settings: SettingsResource,
    patient_split: pd.DataFrame,
    feature_importance: pd.DataFrame,
):
    """Every classifier x resampler the study names (the paper's 8 x {SMOTE, undersampling}): nested
    CV on the training patients, then tuned on all of them, Platt-scaled on the nested out-of-fold
    probabilities, and scored on the test patients with bootstrap intervals."""
    study = settings.settings()
    matrix = read_training_matrix(feature_store)
    features = feature_importance.loc[feature_importance["kept"], "feature_name"].tolist()
    context.log.info(
        f"fitting {study.models.n_pipelines} pipelines on {len(features)} features, {study.models.workers} worker(s)"
    )
    result = fit_radiomics_arm(matrix, patient_split, features, study.models, study.label, study.seed)
    leakage = split_effect(matrix, features, fitting_settings(study.models, matrix), study.label, study.seed)
    settings_hash = study.step_hash("radiomics_models")
    metrics = _saved(store.store(), result, settings_hash, provenance(study, "lesions", "radiomics"))
    yield dg.Output(
        metrics,
        "radiomics_metrics",
        metadata={"table_3": dg.MetadataValue.md(table3(metrics)), **auc_metadata(metrics), **leakage},
    )
    yield dg.Output(
        result.predictions.assign(settings_hash=settings_hash),
        "radiomics_predictions",
        metadata={"n_test_rows": int((result.predictions["evaluation"] == "test").sum())},
    )
    yield dg.Output(
        result.cv_folds.assign(settings_hash=settings_hash),
        "radiomics_cv_folds",
        metadata={"outer_folds": int(result.cv_folds.groupby("model_id").size().max())},
    )
    yield dg.Output(result.cv_predictions.assign(settings_hash=settings_hash), "radiomics_cv_predictions")


def _saved(store: Store, result: ArmResult, settings_hash: str, origin: dict) -> pd.DataFrame:
    """Each fitted model and its card under artifacts/models/<arm>/; the metrics with their files."""
    folder = store.artifact_path("models", result.metrics["arm"].iloc[0])
    paths = {
        m.model_id: save_model(folder, m.model_id, m.pipeline, {**m.card, "settings_hash": settings_hash, **origin})
        for m in result.models
    }
    return result.metrics.assign(
        model_file=lambda f: f["model_id"].map(lambda i: store.relative(paths[i])), settings_hash=settings_hash
    )


@dg.multi_asset(
    group_name=STUDY_GROUP,
    deps=[TRAINING_MATRIX],
    outs={
        "baseline_metrics": dg.AssetOut(kinds=KINDS, description="Table 3, baseline rows: lesion size, lesion count"),
        "baseline_predictions": dg.AssetOut(kinds=KINDS, description="per-lesion probabilities of the baselines"),
    },
)
def baseline_models(
    context: dg.AssetExecutionContext,
    store: StoreResource,
    feature_store: DuckDBResource,
    settings: SettingsResource,
    patient_split: pd.DataFrame,
):
    """What the radiomics models must beat: lesion size and the patient's lesion count, each a
    logistic regression fitted, calibrated and scored exactly like them (metorigin/study/baselines.py)."""
    study = settings.settings()
    matrix = read_training_matrix(feature_store)
    with feature_store.get_connection() as con:
        lesions = con.execute("select lesion_id, volume_ml, max_diameter_mm from lesions").df()
    frame = baseline_matrix(matrix, lesions)
    results = fit_baselines(frame, patient_split, study.models, study.label, study.seed)
    settings_hash = study.step_hash("radiomics_models")
    origin = provenance(study, "lesions")
    metrics = pd.concat([_saved(store.store(), result, settings_hash, origin) for result in results], ignore_index=True)
    predictions = pd.concat([result.predictions for result in results], ignore_index=True)
    context.log.info(", ".join(f"{m['model']}: test AUC {m['auc']:.2f}" for _, m in metrics.iterrows()))
    yield dg.Output(metrics, "baseline_metrics", metadata={"table_3": dg.MetadataValue.md(table3(metrics))})
    yield dg.Output(predictions.assign(settings_hash=settings_hash), "baseline_predictions")
