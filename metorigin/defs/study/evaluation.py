"""Table 3 and its intervals and comparisons, and the robustness analyses (the permutation null,
the split repeats), as Dagster assets."""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from metorigin.arms import ARMS, PREDICTION_TABLES
from metorigin.defs.common.names import KINDS, STUDY_GROUP, TRAINING_MATRIX
from metorigin.defs.common.resources import SettingsResource, read_training_matrix
from metorigin.study.combined import best_radiomics_model
from metorigin.study.comparison import compare_with_best
from metorigin.study.evaluation import labels
from metorigin.study.metrics import every_model_intervals
from metorigin.study.robustness import permutation_null, robustness_rounds, round_aucs, split_repeat_aucs, split_spread
from metorigin.study.tables import comparisons_table, permutation_summary, split_table


@dg.multi_asset(
    group_name=STUDY_GROUP,
    ins={"radiomics_metrics": dg.AssetIn(), **{table: dg.AssetIn() for table in PREDICTION_TABLES}},
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
    **arm_predictions: pd.DataFrame,
):
    """What a reviewer asks of Table 3: per-class metrics, calibration and degenerate intervals for
    every row, and whether any model is distinguishable from the one the training patients chose."""
    study = settings.settings()
    predictions = pd.concat([arm_predictions[name] for name in PREDICTION_TABLES], ignore_index=True)
    predictions = predictions.assign(y_true=labels(predictions, study.label))
    resamples, seed, settings_hash = study.models.bootstrap_resamples, study.seed, study.step_hash("radiomics_models")
    sources = {arm.name: arm.threshold_from for arm in ARMS}
    intervals = every_model_intervals(predictions, sources, study.label, resamples, seed)
    intervals = intervals.assign(settings_hash=settings_hash)
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
    """How much of the radiomics arm chance could explain (metorigin/study/robustness.py). It reads only the split
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
