"""Dagster shells around the study's models: split, selection, radiomics arm, DenseNet, combined.

They read `training_matrix` from the published feature store through a read-only `DuckDBResource`
and write their results to the lake; dbt then exposes them in DuckDB (`sql/models/results/`),
like every other table.
"""

import json
from dataclasses import asdict

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from metorigin.core.devices import choose_device
from metorigin.core.files import atomic_path
from metorigin.core.lifecycle import patient_hash
from metorigin.core.markdown import markdown_table
from metorigin.core.store import Store
from metorigin.core.study import StudySettings, protocol
from metorigin.defs.common.names import KINDS, STUDY_GROUP, TRAINING_MATRIX
from metorigin.defs.common.resources import SettingsResource, StoreResource, read_training_matrix
from metorigin.imaging.slices import crop_description
from metorigin.inference.lesions import slice_arrays
from metorigin.study.baselines import baseline_matrix, fit_baselines
from metorigin.study.combined import best_radiomics_model, stack
from metorigin.study.comparison import compare_with_best
from metorigin.study.evaluation import labels, predicted_labels, test_metrics
from metorigin.study.metrics import FIXED, metric_intervals, youden_threshold
from metorigin.study.radiomics_arm import ArmResult, feature_columns, fit_radiomics_arm, fitting_settings, split_effect
from metorigin.study.registry import data_hash, model_id, save_model
from metorigin.study.robustness import permutation_null, robustness_rounds, round_aucs, split_repeat_aucs, split_spread
from metorigin.study.selection import drop_correlated, feature_importance_table, permutation_ranking
from metorigin.study.split import (
    TEST,
    TRAIN,
    VALIDATION,
    extend_split,
    holds_out_every_class,
    split_patients,
    training_patients,
)
from metorigin.study.tables import auc_metadata, comparisons_table, permutation_summary, split_table, table2, table3

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


def provenance(study: StudySettings, *inputs: str) -> dict:
    """What a model card records so that the model can later score other rows honestly: the settings
    hash of each step that made its inputs (scoring refuses rows made otherwise), and the acquisition
    protocol of its training scans (scoring flags a scan outside it)."""
    return {
        "input_settings": {step: study.step_hash(step) for step in inputs},
        "inclusion": protocol(study, "inclusion"),
        "label_classes": list(study.label.classes),
    }


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
    logistic regression fitted, calibrated and scored exactly like them (ml/baselines.py)."""
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


@dg.multi_asset(
    group_name=STUDY_GROUP,
    deps=[TRAINING_MATRIX, dg.AssetKey(["feature_store", "lesion_slices"])],
    outs={
        "densenet_metrics": dg.AssetOut(kinds=KINDS, description="Table 3, DenseNet-121 row"),
        "densenet_predictions": dg.AssetOut(kinds=KINDS, description="per-lesion mean of slice probabilities"),
    },
)
def densenet(
    context: dg.AssetExecutionContext,
    store: StoreResource,
    feature_store: DuckDBResource,
    settings: SettingsResource,
    patient_split: pd.DataFrame,
):
    """DenseNet-121 from scratch on the training patients' slices; the validation patients pick the
    epoch; the test patients' lesions are scored once, at the end."""
    # torch and MONAI load here, not with the module: every run process loads these definitions, and
    # per-scan runs (most of them) never need a network.
    import torch

    from metorigin.study.densenet import (
        EpochLog,
        at_training_prevalence,
        lesion_probabilities,
        model_params,
        pick_slices,
        predict,
        train,
    )

    study = settings.settings()
    config = study.densenet
    with feature_store.get_connection() as con:
        index = con.execute("""select s.lesion_id, s.scan_id, s.patient_id, t.label, s.slice_index, s.array_row,
                                      s.lesion_area_px, s.slices_file
                               from lesion_slices s join training_matrix t using (lesion_id)
                               order by s.lesion_id, s.slice_index""").df()
    rows = pick_slices(index, config.max_slices_per_lesion).merge(patient_split[["patient_id", "set"]], on="patient_id")
    images = slice_arrays(store.store().root, rows, config.image_size)
    part = {name: rows.index[rows["set"] == name].to_numpy() for name in (TRAIN, VALIDATION, TEST)}
    y = labels(rows, study.label)
    context.log.info(
        f"DenseNet-121 on {len(part[TRAIN])} training, {len(part[VALIDATION])} validation and "
        f"{len(part[TEST])} test slices at {config.image_size} px, {config.epochs} epochs, "
        f"device {choose_device(config.device)}"
    )
    checkpoint = store.store().artifact_path("models", "densenet") / "checkpoint.pt"

    def progress(log: EpochLog) -> None:
        context.log.info(
            f"epoch {log.epoch}/{config.epochs}: loss {log.loss:.4f}, validation AUC "
            f"{log.validation_auc:.3f} [{log.validation_auc_ci_low:.2f}, {log.validation_auc_ci_high:.2f}], "
            f"{log.images_per_s:.1f} images/s, {log.seconds:.0f} s"
        )

    result = train(
        images[part[TRAIN]],
        y[part[TRAIN]],
        images[part[VALIDATION]],
        y[part[VALIDATION]],
        rows.loc[part[VALIDATION], "lesion_id"].to_numpy(),
        config,
        study.seed,
        checkpoint,
        progress,
        val_patients=rows.loc[part[VALIDATION], "patient_id"].to_numpy(),
    )
    best = result.history[result.best_epoch - 1]
    # How much the chosen epoch owes to which validation patients: the epochs whose validation AUC
    # lies within the best epoch's patient-bootstrap interval could as well have been chosen.
    rivals = sum(h.validation_auc >= best.validation_auc_ci_low for h in result.history)
    scored = []
    for evaluation, name in (("validation", VALIDATION), ("test", TEST)):
        chosen = rows.loc[part[name]]
        slices = at_training_prevalence(predict(result.model, images[part[name]], result.device), y[part[TRAIN]])
        per_lesion = lesion_probabilities(chosen["lesion_id"].to_numpy(), slices)
        lesions = chosen.drop_duplicates("lesion_id").set_index("lesion_id")[["scan_id", "patient_id", "label"]]
        scored.append(lesions.assign(probability=per_lesion, evaluation=evaluation).reset_index())
    card = {
        "arm": "densenet",
        "features": crop_description(study.slices, config.image_size),
        "params": model_params(config),
        "seed": study.seed,
        "best_epoch": result.best_epoch,
        "best_validation_auc": result.best_validation_auc,
        "calibration": {
            "method": "odds moved from the class-weighted (balanced) output to the training slices' prevalence",
            "positive_share": float(np.mean(y[part[TRAIN]])),
        },
        "history": [asdict(h) for h in result.history],
        "training_data_sha256": data_hash(rows.loc[part[TRAIN], ["lesion_id", "slice_index"]], y[part[TRAIN]]),
        "training_slices": int(len(part[TRAIN])),
        "training_patient_ids": sorted(rows.loc[part[TRAIN], "patient_id"].unique()),
        "validation_patient_ids": sorted(rows.loc[part[VALIDATION], "patient_id"].unique()),
        "positive_class": study.label.positive,
        "settings_hash": study.step_hash("densenet"),
        **provenance(study, "lesions", "slices"),
    }
    identifier = model_id("densenet121", card)
    path = save_model(checkpoint.parent, identifier, result.model.state_dict(), card, write=torch.save, suffix=".pt")
    predictions = pd.concat(scored, ignore_index=True).assign(
        model_id=identifier,
        arm="densenet",
        model="densenet121",
        resampler=None,
        predicted_label=lambda f: predicted_labels(f["probability"], study.label),
        settings_hash=card["settings_hash"],
    )
    tested = predictions[predictions["evaluation"] == "test"].assign(y_true=lambda f: labels(f, study.label))
    metrics = pd.DataFrame(
        [
            {
                "model_id": identifier,
                "arm": "densenet",
                "model": "densenet121",
                "resampler": None,
                **test_metrics(tested, study.models.bootstrap_resamples, study.seed),
                "validation_auc": result.best_validation_auc,
                "validation_auc_ci_low": best.validation_auc_ci_low,
                "validation_auc_ci_high": best.validation_auc_ci_high,
                "best_epoch": result.best_epoch,
                "epochs_within_interval": rivals,
                "epochs": config.epochs,
                "image_size": config.image_size,
                "params": str(model_params(config)),
                "calibration": card["calibration"]["method"],
                "seed": study.seed,
                "training_data_sha256": card["training_data_sha256"],
                "model_file": store.store().relative(path),
                "settings_hash": card["settings_hash"],
            }
        ]
    )
    yield dg.Output(
        metrics,
        "densenet_metrics",
        metadata={
            "table_3": dg.MetadataValue.md(table3(metrics)),
            **auc_metadata(metrics),
            "best_epoch": result.best_epoch,
            "epochs_within_interval": rivals,
            "epochs": dg.MetadataValue.md(
                markdown_table(
                    [
                        {
                            "epoch": h.epoch,
                            "loss": f"{h.loss:.4f}",
                            "validation AUC [95% CI]": f"{h.validation_auc:.3f} "
                            f"[{h.validation_auc_ci_low:.2f}, {h.validation_auc_ci_high:.2f}]",
                        }
                        for h in result.history
                    ]
                )
            ),
            "device": str(result.device),
        },
    )
    yield dg.Output(predictions, "densenet_predictions", metadata={"n_test_lesions": len(tested)})


@dg.multi_asset(
    group_name=STUDY_GROUP,
    outs={
        "combined_metrics": dg.AssetOut(kinds=KINDS, description="Table 3, radiomics + DenseNet row"),
        "combined_predictions": dg.AssetOut(kinds=KINDS, description="stacked per-lesion probabilities"),
    },
)
def combined_model(
    context: dg.AssetExecutionContext,
    store: StoreResource,
    settings: SettingsResource,
    radiomics_metrics: pd.DataFrame,
    radiomics_predictions: pd.DataFrame,
    densenet_predictions: pd.DataFrame,
):
    """The best radiomics model (by nested CV on the training patients) stacked with the DenseNet."""
    study = settings.settings()
    best = best_radiomics_model(radiomics_metrics)
    densenet_id = densenet_predictions["model_id"].iloc[0]
    stacked = stack(
        radiomics_predictions[radiomics_predictions["model_id"] == best["model_id"]],
        densenet_predictions,
        study.label,
        study.seed,
    )
    fit = stacked.fit_rows
    card = {
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
    identifier = model_id(f"combined_{best['model']}_{best['resampler']}_densenet121", card)
    folder = store.store().artifact_path("models", "combined")
    path = save_model(folder, identifier, stacked.stacker if stacked.stacker is not None else stacked.how, card)
    name = f"{best['model']}+densenet121"
    columns = ["lesion_id", "scan_id", "patient_id", "label", "evaluation", "probability"]
    predictions = stacked.predictions[columns].assign(
        model_id=identifier,
        arm="combined",
        model=name,
        resampler=best["resampler"],
        predicted_label=lambda f: predicted_labels(f["probability"], study.label),
        settings_hash=card["settings_hash"],
    )
    tested = predictions[predictions["evaluation"] == "test"].assign(y_true=lambda f: labels(f, study.label))
    metrics = pd.DataFrame(
        [
            {
                "model_id": identifier,
                "arm": "combined",
                "model": name,
                "resampler": best["resampler"],
                **test_metrics(tested, study.models.bootstrap_resamples, study.seed),
                "params": str(stacked.how),
                "seed": study.seed,
                "training_data_sha256": card["training_data_sha256"],
                "model_file": store.store().relative(path),
                "settings_hash": card["settings_hash"],
            }
        ]
    )
    context.log.info(f"combined {best['model_id']} with {densenet_id}: {stacked.how['method']}")
    yield dg.Output(
        metrics,
        "combined_metrics",
        metadata={
            "table_3": dg.MetadataValue.md(table3(metrics)),
            **auc_metadata(metrics),
            "method": stacked.how["method"],
        },
    )
    yield dg.Output(predictions, "combined_predictions", metadata={"n_test_lesions": len(tested)})


# Where each arm's second threshold is chosen: never on the test patients.
THRESHOLD_SOURCE = {
    "radiomics": ("out_of_fold", "out-of-fold, training patients"),
    "baseline": ("out_of_fold", "out-of-fold, training patients"),
    "densenet": ("validation", "validation patients"),
    "combined": ("validation", "validation patients"),  # in-sample when they fitted a stacker
}


@dg.multi_asset(
    group_name=STUDY_GROUP,
    outs={
        "metric_intervals": dg.AssetOut(
            kinds=KINDS,
            description="Every model's per-class metrics on the test patients, lesion and patient level, at 0.5 "
            "and at a threshold chosen without them, each with its 95% interval and a flag where it is degenerate",
        ),
        "model_comparisons": dg.AssetOut(
            kinds=KINDS,
            description="Every model's test AUC against the best model's (chosen by nested CV on the training "
            "patients): paired patient-bootstrap difference with its 95% interval, p-value and Holm-corrected p",
        ),
    },
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    settings: SettingsResource,
    radiomics_metrics: pd.DataFrame,
    radiomics_predictions: pd.DataFrame,
    baseline_predictions: pd.DataFrame,
    densenet_predictions: pd.DataFrame,
    combined_predictions: pd.DataFrame,
):
    """What a reviewer asks of Table 3: per-class metrics, calibration and degenerate intervals for
    every row, and whether any model is distinguishable from the one the training patients chose."""
    study = settings.settings()
    arms = [radiomics_predictions, baseline_predictions, densenet_predictions, combined_predictions]
    predictions = pd.concat(arms, ignore_index=True)
    predictions = predictions.assign(y_true=labels(predictions, study.label))
    resamples, seed, settings_hash = study.models.bootstrap_resamples, study.seed, study.step_hash("radiomics_models")
    tables = []
    for _, rows in predictions.groupby("model_id", sort=True):
        first = rows.iloc[0]
        evaluation, chosen_on = THRESHOLD_SOURCE[first["arm"]]
        fit = rows[rows["evaluation"] == evaluation]
        thresholds = [FIXED]
        if fit["y_true"].nunique() == 2:
            thresholds.append(youden_threshold(fit["y_true"], fit["probability"], chosen_on))
        table = metric_intervals(rows[rows["evaluation"] == "test"], thresholds, study.label, resamples, seed)
        tables.append(table.assign(**first[["model_id", "arm", "model", "resampler"]].to_dict()))
    intervals = pd.concat(tables, ignore_index=True).assign(settings_hash=settings_hash)
    best = best_radiomics_model(radiomics_metrics)["model_id"]
    comparisons = compare_with_best(predictions[predictions["evaluation"] == "test"], best, resamples, seed)
    degenerate = intervals.dropna(subset=["flag"])
    context.log.info(
        f"{len(intervals)} metrics of {intervals['model_id'].nunique()} models, {len(degenerate)} with a degenerate "
        f"interval; {int((comparisons['p_holm'] < 0.05).sum())} comparison(s) with the best model ({best}) at "
        "Holm-corrected p < 0.05"
    )
    yield dg.Output(intervals, "metric_intervals", metadata={"n_degenerate": len(degenerate)})
    yield dg.Output(
        comparisons.assign(settings_hash=settings_hash),
        "model_comparisons",
        metadata={"best_model": best, "comparisons": dg.MetadataValue.md(comparisons_table(comparisons))},
    )


@dg.multi_asset(
    group_name=STUDY_GROUP,
    deps=[TRAINING_MATRIX],
    outs={
        "permutation_null": dg.AssetOut(
            kinds=KINDS,
            description="Label-permutation test of the radiomics arm: the best test AUC over the pipelines with "
            "the training patients' labels permuted, one row per permutation (and the observed labels), p-value",
        ),
        "split_repeats": dg.AssetOut(
            kinds=KINDS,
            description="The radiomics arm refitted on other seeded test splits: every pipeline's test AUC per split",
        ),
    },
    # Last among the steps ready to run: Table 3 and its dbt step go first, this (minutes) after.
    op_tags={"dagster/priority": "-1"},
)
def robustness(
    context: dg.AssetExecutionContext,
    feature_store: DuckDBResource,
    settings: SettingsResource,
    patient_split: pd.DataFrame,
):
    """How much of the radiomics arm chance could explain (ml/robustness.py). It reads only the split
    and the training matrix, runs after every other ready step (priority -1), and its own dbt step
    publishes it: neither its minutes nor a failure hold up Table 3's publication."""
    study = settings.settings()
    matrix = read_training_matrix(feature_store)
    plan = study.robustness
    rounds = robustness_rounds(matrix, patient_split, study.split, plan.permutations, plan.split_repeats, study.seed)
    context.log.info(
        f"refitting {study.models.n_pipelines} pipelines {len(rounds)} times: the study's split, "
        f"{plan.permutations} label permutation(s), {plan.split_repeats - 1} other split(s)"
    )
    aucs = round_aucs(rounds, study.models, study.label, study.seed)
    settings_hash = study.step_hash("robustness")
    null, repeats = permutation_null(aucs), split_repeat_aucs(aucs)
    summary = permutation_summary(null)
    context.log.info(summary)
    yield dg.Output(
        null.assign(settings_hash=settings_hash),
        "permutation_null",
        metadata={"p_value": float(null["p_value"].iloc[0]), "summary": summary, "permutations": plan.permutations},
    )
    yield dg.Output(
        repeats.assign(settings_hash=settings_hash),
        "split_repeats",
        metadata={"splits": plan.split_repeats, "spread": dg.MetadataValue.md(split_table(split_spread(repeats)))},
    )
