"""Dagster resources: where the cohort is, where the store is, which study runs.

Defaults come from the environment (METORIGIN_COHORT, METORIGIN_STORE, METORIGIN_STUDY,
METORIGIN_PROFILE, METORIGIN_SEED, METORIGIN_NNUNET_MODEL, METORIGIN_WORKERS,
METORIGIN_DENSENET_EPOCHS, METORIGIN_SPLIT_REPEATS, METORIGIN_EXECUTOR, METORIGIN_DASK_ADDRESS,
METORIGIN_SCANS_AT_ONCE), which the CLI sets, so `dagster dev`,
`metorigin run` and the sensor all see the same folders and study without repeating them in run config.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster import ConfigurableIOManager, ConfigurableResource, InputContext, OutputContext
from dagster_duckdb import DuckDBResource

from metorigin.core.lease import store_session
from metorigin.core.store import Store
from metorigin.core.study import StudySettings, get_settings, load_study, with_run_choices

DEFAULT_COHORT = "demo/cohort"
DEFAULT_STORE = "demo/store"


class CohortResource(ConfigurableResource):
    """The cohort folder: patients.csv, scans.csv and the images they list."""

    path: str


class StoreResource(ConfigurableResource):
    """The store folder (lake, artefacts, DuckDB feature store)."""

    path: str

    def store(self) -> Store:
        return Store(self.path)

    def session(self, holder: str):
        """The store's writer lease (base/lease.py) for a step that writes the whole store: waits
        for another session; re-entered at once inside the `metorigin run` that already holds it."""
        return store_session(Path(self.path), holder, on_wait=logging.getLogger("metorigin").warning)


class SettingsResource(ConfigurableResource):
    """The study (a study file, or a built-in profile) with the few choices users make per run."""

    study_file: str = ""  # a study YAML; empty: the built-in study of the seed paper, `profile`
    profile: str = "quick"
    seed: int | None = None  # None: the study's seed
    nnunet_model_dir: str = ""  # set to segment with nnU-Net instead of the cohort's masks
    workers: int = 0  # processes for per-lesion work and model fitting; 0 = one per core
    densenet_epochs: int = 0  # 0 = the study's; fewer for a smoke run, more to continue a training
    split_repeats: int = 0  # 0 = the study's; test splits the radiomics arm is refitted on
    executor: str = ""  # empty: the study's `cluster.executor`
    dask_address: str = ""  # a Dask scheduler (the executor is then dask); empty: the study's
    scans_at_once: int = 0  # 0 = the study's `cluster.scans_at_once`

    def settings(self) -> StudySettings:
        settings = load_study(self.study_file, self.seed) if self.study_file else get_settings(self.profile, self.seed)
        return with_run_choices(
            settings,
            self.nnunet_model_dir,
            self.workers,
            self.densenet_epochs,
            self.split_repeats,
            self.executor,
            self.dask_address,
            self.scans_at_once,
        )


class LakeIOManager(ConfigurableIOManager):
    """Asset values are DataFrames stored as `lake/<asset>/<partition>.parquet`.

    The lake is the truth; the DuckDB feature store is built from it by dbt (sql/), so a Python
    asset never holds a DuckDB connection while it computes.
    """

    path: str

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        name = context.asset_key.path[-1]
        if context.has_partition_key:  # one scan's file: its own run writes it, no other session does
            path = Store(self.path).write_lake(name, obj, context.partition_key)
        else:  # a whole-store table (cohort, study results): one writer session at a time
            with store_session(Path(self.path), f"run {context.run_id} ({name})"):
                path = Store(self.path).write_lake(name, obj)
        context.add_output_metadata({"rows": len(obj), "lake_file": str(path)})

    def load_input(self, context: InputContext) -> pd.DataFrame:
        store = Store(self.path)
        name = context.asset_key.path[-1]
        partitions = list(context.asset_partition_keys) if context.has_asset_partitions else None
        return store.read_lake(name, partitions)


def feature_store_reader(store_path: str) -> DuckDBResource:
    """The published feature store as the study assets read it: read-only and without file access, as
    `metorigin sql` opens it (every relation in it is a table, so nothing needs the lake).

    dagster-duckdb opens connections read-write; DuckDB's `access_mode` setting in the shared
    `READ_ONLY_CONFIG` makes them read-only, and its other settings lock file access off."""
    from metorigin.core.store import READ_ONLY_CONFIG

    return DuckDBResource(database=str(Store(store_path).duckdb_path), connection_config=dict(READ_ONLY_CONFIG))


def resources_from_env() -> dict:
    store_path = os.environ.get("METORIGIN_STORE", DEFAULT_STORE)
    return {
        "cohort": CohortResource(path=os.environ.get("METORIGIN_COHORT", DEFAULT_COHORT)),
        "store": StoreResource(path=store_path),
        "feature_store": feature_store_reader(store_path),
        "settings": SettingsResource(
            study_file=os.environ.get("METORIGIN_STUDY", ""),
            profile=os.environ.get("METORIGIN_PROFILE", "quick"),
            seed=int(os.environ["METORIGIN_SEED"]) if os.environ.get("METORIGIN_SEED") else None,
            nnunet_model_dir=os.environ.get("METORIGIN_NNUNET_MODEL", ""),
            workers=int(os.environ.get("METORIGIN_WORKERS", 0)),
            densenet_epochs=int(os.environ.get("METORIGIN_DENSENET_EPOCHS", 0)),
            split_repeats=int(os.environ.get("METORIGIN_SPLIT_REPEATS", 0)),
            executor=os.environ.get("METORIGIN_EXECUTOR", ""),
            dask_address=os.environ.get("METORIGIN_DASK_ADDRESS", ""),
            scans_at_once=int(os.environ.get("METORIGIN_SCANS_AT_ONCE", 0)),
        ),
        "io_manager": LakeIOManager(path=store_path),
    }


def read_training_matrix(feature_store: DuckDBResource) -> pd.DataFrame:
    with feature_store.get_connection() as con:
        matrix = con.execute("select * from training_matrix order by lesion_id").df()
    if matrix.empty:
        raise dg.Failure(
            "no lesions to learn from: training_matrix has no included lesion of an included scan "
            "(no scan met the inclusion criteria, or no lesion reached the minimum diameter, or the "
            'segmentations found none); see `metorigin sql --store STORE "select scan_id, '
            'exclusion_reason from scans"` and the lesions table'
        )
    return matrix
