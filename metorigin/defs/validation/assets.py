"""External validation: another store's frozen models on this store's labelled cohort.

`metorigin validate --models STORE_A --cohort COHORT_B --store STORE_B` builds store B's feature
store under A's study (the same lesion, radiomics and slice settings) and then runs
`external_validation` in B with `models_store` = A. Every model of A's latest training (Table 3's
rows) scores B's labelled lesions as it was saved: scaler, redundancy filter (its kept features),
classifier, Platt scaling, DenseNet weights and prevalence shift, stacker. Nothing is refitted.
`external_metrics` has Table 3's columns with patient-bootstrap intervals, computed exactly as
Table 3's, and A's own test AUC beside them.
"""

from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from metorigin.core.markdown import markdown_table
from metorigin.core.store import Store
from metorigin.defs.common.names import KINDS, TRAINING_MATRIX, VALIDATION_GROUP
from metorigin.defs.common.resources import SettingsResource, StoreResource, read_training_matrix
from metorigin.inference.lesions import learnt_from, made_under, score_lesions, with_notes
from metorigin.inference.registry import METRIC_TABLES, registered, registry_models
from metorigin.report.store_report import build_external_report
from metorigin.study.baselines import baseline_matrix
from metorigin.study.evaluation import labels, test_metrics
from metorigin.study.scoring import ScoringRefused, calls


class ExternalValidationConfig(dg.Config):
    models_store: str  # the store whose trained models are validated here (frozen)


def trained_models(models_store: Store) -> pd.DataFrame:
    """Table 3's rows of the models store: the models of its latest training."""
    frames = [models_store.read_lake(name) for name in METRIC_TABLES if models_store.lake_partitions(name)]
    if not frames or not models_store.lake_partitions("models"):
        raise dg.Failure(
            f"{models_store.root} holds no registered models: train there first (`metorigin run`), then validate"
        )
    return pd.concat(frames, ignore_index=True)


def external_rows(
    models_root: Path,
    data_root: Path,
    metrics: pd.DataFrame,
    matrix: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
) -> pd.DataFrame:
    """Every lesion of `matrix` scored by every model of `metrics` (with its out-of-distribution notes);
    `tables`: this store's included `lesions`, their `slices`, the `scans`, and the `radiomics`
    features' settings hashes."""
    registry = registry_models(Store(models_root))
    models = {mid: registered(registry, mid) for mid in metrics["model_id"]}
    lesions, slices = tables["lesions"], tables["slices"]
    size = baseline_matrix(matrix, lesions).drop(columns=["scan_id", "patient_id", "label"])
    wide = matrix.merge(size, on="lesion_id")
    under = made_under(tables["radiomics"]["settings_hash"], slices["settings_hash"], lesions["settings_hash"])
    predictions = score_lesions(models_root, data_root, models, registry, wide, slices, under)
    predictions = with_notes(predictions, models, registry, tables["scans"], wide)
    return predictions.merge(matrix[["lesion_id", "label"]], on="lesion_id")


@dg.multi_asset(
    group_name=VALIDATION_GROUP,
    deps=[TRAINING_MATRIX, dg.AssetKey(["feature_store", "lesion_slices"])],
    outs={
        "external_predictions": dg.AssetOut(
            kinds=KINDS, description="Another store's frozen models on this cohort's labelled lesions"
        ),
        "external_metrics": dg.AssetOut(
            kinds=KINDS, description="External validation: Table 3's columns, patient-bootstrap intervals"
        ),
    },
)
def external_validation(
    context: dg.AssetExecutionContext,
    config: ExternalValidationConfig,
    store: StoreResource,
    feature_store: DuckDBResource,
    settings: SettingsResource,
):
    """Scores this store's labelled lesions with the frozen models of `models_store`; no refit."""
    study = settings.settings()
    source = Store(config.models_store)
    metrics = trained_models(source)
    matrix = read_training_matrix(feature_store)
    queries = {
        "lesions": "select * from lesions where included",
        "slices": "select s.* from lesion_slices s semi join training_matrix t using (lesion_id) "
        "order by lesion_id, slice_index",
        "radiomics": "select distinct settings_hash from radiomics_features",
        "scans": "select * from scans where included",
    }
    with feature_store.get_connection() as con:
        tables = {name: con.execute(query).df() for name, query in queries.items()}
    try:
        predictions = external_rows(source.root, store.store().root, metrics, matrix, tables)
    except ScoringRefused as refused:
        raise dg.Failure(str(refused)) from refused
    registry = registry_models(source)
    learnt = set().union(*(learnt_from(registry[m], registry) for m in metrics["model_id"]))
    shared = sorted(set(predictions["patient_id"]) & learnt)
    if shared:
        context.log.warning(
            f"{len(shared)} patient id(s) of this cohort are among the models' training or validation patients "
            f"({', '.join(shared[:5])}{', ...' if len(shared) > 5 else ''}): the same people, or only the same "
            "pseudonyms? external_metrics counts them (shared_patient_ids)"
        )
    here = store.store().root.resolve()
    # Relative when the models are this store's own (a copied store names no old place), else as given.
    origin = "." if source.root.resolve() == here else str(source.root)
    if origin != ".":  # another centre's patient ids say nothing about who trained the models
        predictions = predictions.assign(seen_in_training=False)
    predictions = predictions.merge(metrics[["model_id", "resampler"]], on="model_id").assign(
        predicted_label=lambda f: calls(f["probability"], study.label), models_store=origin
    )
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
                "shared_patient_ids": len(shared),
                "models_store": origin,
                "model_file": internal["model_file"],
                "settings_hash": internal["settings_hash"],
            }
        )
    table = pd.DataFrame(rows)
    context.log.info(
        f"{len(table)} frozen models of {source.root} on {predictions['patient_id'].nunique()} patients, "
        f"{predictions['lesion_id'].nunique()} lesions"
    )
    yield dg.Output(
        predictions, "external_predictions", metadata={"n_lesions": int(predictions["lesion_id"].nunique())}
    )
    yield dg.Output(table, "external_metrics", metadata={"n_models": len(table)})


@dg.asset(
    group_name=VALIDATION_GROUP,
    deps=[dg.AssetKey(["feature_store", "external_metrics"]), dg.AssetKey(["feature_store", "external_predictions"])],
    kinds={"python", "html"},
    description="The external validation's page: its Table 3, Fig. 4, ROC and calibration curves (HTML, SVG, PNG, CSV)",
)
def external_report(context: dg.AssetExecutionContext, store: StoreResource):
    report = build_external_report(store.store(), f"external-{context.run_id}")
    context.log.info(f"external validation report: {report.html}")
    table = report.paper["table3"]
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(str(report.html)),
            "table_3": dg.MetadataValue.md(
                markdown_table(table.frame.to_dict("records")) + "".join(f"\n\n{n}" for n in table.notes)
            ),
            "figures": len(report.figures),
        }
    )
