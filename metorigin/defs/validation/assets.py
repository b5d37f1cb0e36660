"""External validation: another store's frozen models on this store's labelled cohort
(metorigin/inference/external.py does the scoring and the metrics).

`metorigin validate --models STORE_A --cohort COHORT_B --store STORE_B` builds store B's feature
store under A's study (the same lesion, radiomics and slice settings) and then runs
`external_validation` in B with `models_store` = A. Every model of A's latest training (Table 3's
rows) scores B's labelled lesions as it was saved: scaler, redundancy filter (its kept features),
classifier, Platt scaling, DenseNet weights and prevalence shift, stacker. Nothing is refitted.
`external_metrics` has Table 3's columns with patient-bootstrap intervals, computed exactly as
Table 3's, and A's own test AUC beside them.
"""

import dagster as dg
from dagster_duckdb import DuckDBResource

from metorigin.core.errors import MetoriginError
from metorigin.core.markdown import markdown_table
from metorigin.core.store import Store
from metorigin.defs.common.names import KINDS, TRAINING_MATRIX, VALIDATION_GROUP
from metorigin.defs.common.resources import SettingsResource, StoreResource, read_training_matrix
from metorigin.inference.external import (
    QUERIES,
    external_metrics,
    external_rows,
    labelled_predictions,
    shared_patients,
    trained_models,
)
from metorigin.report.store_report import build_external_report


class ExternalValidationConfig(dg.Config):
    models_store: str  # the store whose trained models are validated here (frozen)


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
    study, source, here = settings.settings(), Store(config.models_store), store.store()
    try:
        metrics = trained_models(source)
        matrix = read_training_matrix(feature_store)
        with feature_store.get_connection() as con:
            tables = {name: con.execute(query).df() for name, query in QUERIES.items()}
        predictions = external_rows(source.root, here.root, metrics, matrix, tables)
    except MetoriginError as refused:
        raise dg.Failure(str(refused)) from refused
    shared = shared_patients(predictions, source, metrics)
    if shared:
        context.log.warning(
            f"{len(shared)} patient id(s) of this cohort are among the models' training or validation patients "
            f"({', '.join(shared[:5])}{', ...' if len(shared) > 5 else ''}): the same people, or only the same "
            "pseudonyms? external_metrics counts them (shared_patient_ids)"
        )
    # Relative when the models are this store's own (a copied store names no old place), else as given.
    origin = "." if source.root.resolve() == here.root.resolve() else str(source.root)
    predictions = labelled_predictions(predictions, metrics, study, origin)
    table = external_metrics(predictions, metrics, study, len(shared), origin)
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
