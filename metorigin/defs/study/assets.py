"""The study's first steps as Dagster assets: the patient split and the feature selection (the model
arms: arms.py; Table 3 and robustness: evaluation.py).

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
from metorigin.study.evaluation import labels
from metorigin.study.radiomics_arm import feature_columns, fitting_settings
from metorigin.study.selection import drop_correlated, feature_importance_table, permutation_ranking
from metorigin.study.split import (
    TEST,
    extend_split,
    holds_out_every_class,
    split_patients,
    training_patients,
)
from metorigin.study.tables import table2

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
