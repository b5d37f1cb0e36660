"""Dagster resources: where the cohort is, where the store is, which study runs.

All built from one `RunConfig` (core/config.py) by `resources_for`, so `metorigin run`, the UI's
code location and the daemon's runs see the same folders and study without repeating them in run
config.
"""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster import ConfigurableIOManager, ConfigurableResource, InputContext, OutputContext
from dagster_duckdb import DuckDBResource

from metorigin.core.config import RunConfig
from metorigin.core.lease import store_session
from metorigin.core.store import Store
from metorigin.core.study import StudySettings
from metorigin.defs.common.run_owner import claim_run
from metorigin.study.arm import TRAINING_MATRIX_QUERY, NoLesionsToLearnFrom, checked_training_matrix


class CohortResource(ConfigurableResource):
    """The cohort folder: patients.csv, scans.csv and the images they list."""

    path: str


class StoreResource(ConfigurableResource):
    """The store folder (lake, artefacts, DuckDB feature store)."""

    path: str

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Nearly every step writes the store: the first one tags the run with its process (run_owner.py).
        if context.instance is not None:
            claim_run(context.instance, context.dagster_run)

    def store(self) -> Store:
        return Store(self.path)

    def session(self, holder: str):
        """The store's writer lease (core/lease.py) for a step that writes the whole store: waits
        for another session; re-entered at once inside the `metorigin run` that already holds it."""
        return store_session(Path(self.path), holder, on_wait=logging.getLogger("metorigin").warning)


class SettingsResource(ConfigurableResource):
    """The study (a study file, or a built-in profile) with the few choices users make per run: the
    run configuration (core/config.py) these definitions were built from."""

    cohort: str = ""
    store: str = ""
    run_log: str = ""
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

    def run_config(self) -> RunConfig:
        return RunConfig(
            cohort=self.cohort,
            store=self.store,
            run_log=self.run_log,
            study_file=self.study_file,
            profile=self.profile,
            seed=self.seed,
            nnunet_model=self.nnunet_model_dir,
            workers=self.workers,
            densenet_epochs=self.densenet_epochs,
            split_repeats=self.split_repeats,
            executor=self.executor,
            dask_address=self.dask_address,
            scans_at_once=self.scans_at_once,
        )

    def settings(self) -> StudySettings:
        """The study, parsed and validated once per process (RunConfig.study)."""
        return self.run_config().study()


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


def resources_for(config: RunConfig) -> dict:
    """The resources of one run configuration."""
    return {
        "cohort": CohortResource(path=config.cohort),
        "store": StoreResource(path=config.store),
        "feature_store": feature_store_reader(config.store),
        "settings": SettingsResource(
            cohort=config.cohort,
            store=config.store,
            run_log=config.run_log,
            study_file=config.study_file,
            profile=config.profile,
            seed=config.seed,
            nnunet_model_dir=config.nnunet_model,
            workers=config.workers,
            densenet_epochs=config.densenet_epochs,
            split_repeats=config.split_repeats,
            executor=config.executor,
            dask_address=config.dask_address,
            scans_at_once=config.scans_at_once,
        ),
        "io_manager": LakeIOManager(path=config.store),
    }


def read_training_matrix(feature_store: DuckDBResource) -> pd.DataFrame:
    with feature_store.get_connection() as con:
        matrix = con.execute(TRAINING_MATRIX_QUERY).df()
    try:
        return checked_training_matrix(matrix)
    except NoLesionsToLearnFrom as empty:
        raise dg.Failure(str(empty)) from empty
