"""Where the per-scan steps run: in the run's process, or on a Dask cluster (cluster.py).

The `process_scan` job has one executor that reads the study's `cluster` settings (and the run
configuration's executor and Dask address, core/config.py) when a run starts, so
the same job serves the CLI, the daemon and the UI on one machine or on a cluster. Steps that want
a GPU carry the op tag dagster-dask maps to Dask worker resources. Nothing here imports Dask: the
tag key is `dagster_dask.executor.DASK_RESOURCE_REQUIREMENTS_KEY` (tests/test_cluster.py checks it).
"""

import json

import dagster as dg

from metorigin.core.config import for_code_location

DASK_RESOURCES_TAG = "dagster-dask/resource_requirements"
GPU_STEP = {DASK_RESOURCES_TAG: json.dumps({"GPU": 1})}  # nnU-Net segmentation, DenseNet scoring
CPU_STEP = {DASK_RESOURCES_TAG: json.dumps({"CPU": 1})}  # the rest: never in a GPU worker's slot


@dg.executor(name="per_scan")
def per_scan_executor(init_context) -> dg.Executor:
    """In the run's process (executor in_process or multiprocess: those place whole scans), or each
    step on the Dask cluster (dask), as the study's cluster settings say when the run starts."""
    config = for_code_location()
    cluster = config.study().cluster
    if cluster.executor != "dask":
        return dg.in_process_executor.executor_creation_fn(init_context)
    from metorigin.runtime.cluster import DaskStepExecutor

    return DaskStepExecutor(config.dask_address or cluster.address, cluster.resource_timeout_s)
