"""Everything Dagster loads: `dagster dev -m metorigin.definitions` and `metorigin run` alike.

Each group subpackage of `metorigin.defs` gives its own Definitions; this module merges them with
the named jobs and the resources of one store and study.
"""

from functools import lru_cache

import dagster as dg

from metorigin.core.config import RunConfig, activate, for_code_location
from metorigin.defs import cohort, feature_store, imaging, study, validation
from metorigin.defs.common.resources import resources_for
from metorigin.defs.feature_store.dbt import dbt_resource
from metorigin.defs.jobs import JOBS
from metorigin.runtime.placement import per_scan_executor

GROUPS = (cohort, imaging, feature_store, study, validation)


def build_definitions(config: RunConfig) -> dg.Definitions:
    """The definitions of one store and study: the study fixes the code versions (runtime/versions.py).
    They become this process's: a job Dagster reconstructs here (`defs` below) is built from them."""
    activate(config)
    study = config.study()
    return dg.Definitions.merge(
        *(group.definitions(study) for group in GROUPS),
        # The default executor of every job, Dagster's implicit one for the UI's launches included:
        # in the run's process unless the study sends the steps to a Dask cluster (placement.py).
        dg.Definitions(
            jobs=list(JOBS),
            executor=per_scan_executor(config),
            resources={"dbt": dbt_resource(), **resources_for(config)},
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What a code location loads, built when it loads (not at import): this process's configuration,
    or the instance's (`metorigin ui` writes it; core/config.py)."""
    return _loaded(for_code_location())


@lru_cache(maxsize=4)
def _loaded(config: RunConfig) -> dg.Definitions:
    """One Definitions object per configuration: Dagster loads a run's job again for each other
    asset selection (its memo holds one job), and a Definitions object keeps the repository it
    resolved (seconds), so loading it again is quick."""
    return build_definitions(config)
