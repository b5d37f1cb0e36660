"""Dagster resources: where the cohort is, where the store is, which settings profile runs.

Defaults come from the environment (METORIGIN_COHORT, METORIGIN_STORE, METORIGIN_PROFILE,
METORIGIN_SEED, METORIGIN_NNUNET_MODEL, METORIGIN_WORKERS, METORIGIN_DENSENET_EPOCHS), which the
CLI sets, so `dagster dev`, `metorigin run` and the sensor all see the same folders without
repeating them in run config.
"""

from __future__ import annotations

import os
from dataclasses import replace
import pandas as pd
from dagster import ConfigurableIOManager, ConfigurableResource, InputContext, OutputContext

from .settings import DEFAULT_SEED, StudySettings, get_settings
from .store import Store

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


class SettingsResource(ConfigurableResource):
    """The settings profile and seed for this run, with the few choices users make per run."""

    profile: str = "quick"
    seed: int = DEFAULT_SEED
    nnunet_model_dir: str = ""   # set to segment with nnU-Net instead of the cohort's masks
    workers: int = 0             # processes for per-lesion work and model fitting; 0 = one per core
    densenet_epochs: int = 0     # 0 = the profile's; fewer for a smoke run, more to continue a training

    def settings(self) -> StudySettings:
        settings = get_settings(self.profile, self.seed)
        if self.nnunet_model_dir:
            settings = replace(settings, segmentation=replace(settings.segmentation, method="nnunet",
                                                              nnunet_model_dir=self.nnunet_model_dir))
        if self.workers > 0:
            settings = replace(settings, radiomics=replace(settings.radiomics, workers=self.workers),
                               models=replace(settings.models, workers=self.workers))
        if self.densenet_epochs > 0:
            settings = replace(settings, densenet=replace(settings.densenet, epochs=self.densenet_epochs))
        return settings


class LakeIOManager(ConfigurableIOManager):
    """Asset values are DataFrames stored as `lake/<asset>/<partition>.parquet`.

    The lake is the truth; the DuckDB feature store is built from it by dbt (sql/), so a Python
    asset never holds a DuckDB connection while it computes.
    """

    path: str

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        name = context.asset_key.path[-1]
        partition = context.partition_key if context.has_partition_key else None
        path = Store(self.path).write_lake(name, obj, partition)
        context.add_output_metadata({"rows": len(obj), "lake_file": str(path)})

    def load_input(self, context: InputContext) -> pd.DataFrame:
        store = Store(self.path)
        name = context.asset_key.path[-1]
        partitions = list(context.asset_partition_keys) if context.has_asset_partitions else None
        return store.read_lake(name, partitions)


def resources_from_env() -> dict:
    store_path = os.environ.get("METORIGIN_STORE", DEFAULT_STORE)
    return {
        "cohort": CohortResource(path=os.environ.get("METORIGIN_COHORT", DEFAULT_COHORT)),
        "store": StoreResource(path=store_path),
        "settings": SettingsResource(profile=os.environ.get("METORIGIN_PROFILE", "quick"),
                                     seed=int(os.environ.get("METORIGIN_SEED", DEFAULT_SEED)),
                                     nnunet_model_dir=os.environ.get("METORIGIN_NNUNET_MODEL", ""),
                                     workers=int(os.environ.get("METORIGIN_WORKERS", 0)),
                                     densenet_epochs=int(os.environ.get("METORIGIN_DENSENET_EPOCHS", 0))),
        "io_manager": LakeIOManager(path=store_path),
    }
