"""Everything Dagster loads: `dagster dev -m metorigin.definitions` and `metorigin run` alike.

Each group subpackage of `metorigin.defs` gives its own Definitions; this module merges them with
the named jobs and the resources of one store and study.
"""

import os
from functools import lru_cache

import dagster as dg

from metorigin.defs import cohort, feature_store, imaging, study, validation
from metorigin.defs.common.resources import resources_from_env
from metorigin.defs.feature_store.dbt import dbt_resource
from metorigin.defs.jobs import JOBS

GROUPS = (cohort, imaging, feature_store, study, validation)


def build_definitions(resources: dict) -> dg.Definitions:
    """The definitions of one store and study: the study fixes the code versions (runtime/versions.py)."""
    settings = resources["settings"].settings()
    return dg.Definitions.merge(
        *(group.definitions(settings) for group in GROUPS),
        dg.Definitions(jobs=list(JOBS), resources={"dbt": dbt_resource(), **resources}),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What a code location loads, built when it loads (not at import): the environment it loads in
    names the cohort, the store and the study (`metorigin ui` and the run processes set it)."""
    return _definitions_in(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("METORIGIN_"))))


@lru_cache(maxsize=4)
def _definitions_in(environment: tuple) -> dg.Definitions:
    """One Definitions object per environment: Dagster loads a run's job again for each other asset
    selection (its memo holds one job), and a Definitions object keeps the repository it resolved
    (seconds), so loading it again is quick."""
    return build_definitions(resources_from_env())
