"""One Dagster instance per store: `<store>/.dagster/`, unless $DAGSTER_HOME names another.

`metorigin run`, `demo`, `forget` and `ui` (so the daemon's sensor and schedule too) open the same
instance for a store, so the UI shows what the CLI did and nothing is processed twice. The
instance records which store it serves: an instance is a history of one store's partitions and
materialisations, and reading it for another store would make that store's scans look done.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from metorigin.core.config import dagster_home_override
from metorigin.core.errors import MetoriginError
from metorigin.core.package import DAGSTER_YAML

INSTANCE_DIR = ".dagster"
SERVED_STORE = "metorigin_store.txt"  # inside the instance folder: the store it belongs to


class InstanceMismatchError(MetoriginError):
    """$DAGSTER_HOME names an instance that already serves another store."""


def instance_home(store: Path) -> Path:
    """Where the store's instance lives: $DAGSTER_HOME when set, else `<store>/.dagster`."""
    override = dagster_home_override()
    return Path(override).absolute() if override else Path(store).absolute() / INSTANCE_DIR


def prepare_dagster_home(home: Path) -> Path:
    """Create the instance folder with our dagster.yaml and the UI's first-run modal dismissed."""
    home = Path(home).absolute()
    (home / ".nux").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DAGSTER_YAML, home / "dagster.yaml")
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    return home


def use_store_instance(store: Path) -> Path:
    """Prepare the store's instance folder and return it (a process started for the store, such as
    `dagster dev`, gets it as its $DAGSTER_HOME through the `env=` of the call that starts it).

    The store is recorded by its folder name relative to the instance when the instance is inside
    it, so a copied or moved store keeps its own instance."""
    store = Path(store).absolute()
    home = prepare_dagster_home(instance_home(store))
    marker = home / SERVED_STORE
    served = os.path.relpath(store, home)
    if marker.exists() and (home / marker.read_text().strip()).resolve() != store.resolve():
        other = (home / marker.read_text().strip()).resolve()
        raise InstanceMismatchError(
            f"the Dagster instance {home} ($DAGSTER_HOME) serves the store {other}, not {store}: its "
            "partitions and materialisations would make this store's scans look processed. Fix: unset "
            f"DAGSTER_HOME (each store then uses its own {INSTANCE_DIR}/ folder), or point it at an empty folder"
        )
    marker.write_text(served + "\n")
    return home


def get_instance(store: Path) -> dg.DagsterInstance:
    """The store's persistent instance (see `use_store_instance`)."""
    return dg.DagsterInstance.from_config(str(use_store_instance(store)))
