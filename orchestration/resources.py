"""Dagster resources: where the cohort is, where the store is, which settings profile runs.

Defaults come from the environment (METORIGIN_COHORT, METORIGIN_STORE, METORIGIN_PROFILE,
METORIGIN_SEED), which the CLI sets, so `dagster dev`, `metorigin run` and the sensor all see the
same folders without repeating them in run config.
"""

from __future__ import annotations

import os
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
    """The settings profile and seed for this run."""

    profile: str = "quick"
    seed: int = DEFAULT_SEED

    def settings(self) -> StudySettings:
        return get_settings(self.profile, self.seed)


class LakeIOManager(ConfigurableIOManager):
    """Asset values are DataFrames stored as `lake/<asset>/<partition>.parquet`.

    Unpartitioned assets are whole tables of the feature store contract (patients, scans, ...),
    so they are also written to the DuckDB file under the same name.
    """

    path: str

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        store = Store(self.path)
        name = context.asset_key.path[-1]
        partition = context.partition_key if context.has_partition_key else None
        path = store.write_lake(name, obj, partition)
        if partition is None:
            store.replace_table(name, obj, holder=f"run {context.run_id} ({name})")
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
                                     seed=int(os.environ.get("METORIGIN_SEED", DEFAULT_SEED))),
        "io_manager": LakeIOManager(path=store_path),
    }
