"""Where the per-scan steps run: in the run's process, or on a Dask cluster (cluster.py).

The `process_scan` job has one executor that reads the study's `cluster` settings (and the run
configuration's executor and Dask address, core/config.py) when a run starts, so
the same job serves the CLI, the daemon and the UI on one machine or on a cluster. Steps that want
a GPU carry the op tag dagster-dask maps to Dask worker resources. Nothing here imports Dask: the
tag key is `dagster_dask.executor.DASK_RESOURCE_REQUIREMENTS_KEY` (tests/test_cluster.py checks it).
"""

import json

import dagster as dg

from metorigin.core.config import RunConfig

DASK_RESOURCES_TAG = "dagster-dask/resource_requirements"
GPU_STEP = {DASK_RESOURCES_TAG: json.dumps({"GPU": 1})}  # nnU-Net segmentation, DenseNet scoring
CPU_STEP = {DASK_RESOURCES_TAG: json.dumps({"CPU": 1})}  # the rest: never in a GPU worker's slot


def per_scan_executor(config: RunConfig) -> dg.ExecutorDefinition:
    """The executor of these definitions' jobs that have none of their own (`process_scan`, and the
    UI's implicit `__ASSET_JOB`): in the run's process (executor in_process or multiprocess: those
    place whole scans), or, for a run of a scan's partition, each step on the Dask cluster (dask),
    as `config`'s study says when the run starts. A run of other assets stays in its process."""

    # The in-process executor's own config (retries, marker file), which it reads when it is created.
    @dg.executor(name="per_scan", config_schema=dg.in_process_executor.config_schema.config_type)
    def per_scan(init_context) -> dg.Executor:
        cluster = config.study().cluster
        in_process = dg.in_process_executor.executor_creation_fn(init_context)
        if cluster.executor != "dask":
            return in_process
        from metorigin.runtime.cluster import DaskStepExecutor

        address = config.dask_address or cluster.address
        return DaskStepExecutor(config, address, cluster.resource_timeout_s, in_process)

    return per_scan
