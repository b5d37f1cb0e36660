"""Every name of Dagster's private API (`dagster._...`) metorigin uses, in one module.

Dagster offers no public way to do these: read the stale/fresh resolver and the event log's
tables in batches (staleness.py), run a step on a Dask worker as dagster-dask does (cluster.py),
reconstruct a job from its code pointer and forget Dagster's memo of it (execution.py), and reset
the definitions-state storage between test modules. (Run statuses, cron strings, selection errors
and serialisation have public ways: defs/common/names.py, defs/study/schedules.py, cli/session.py,
runtime/erasure.py use them.) A patch release of
Dagster may move any of them: tests/test_dagster_internals.py imports and exercises each, so an
upgrade that changes one fails there, by name, rather than somewhere in a run.
"""

from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import (
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    DEFAULT_DATA_VERSION,
    INPUT_DATA_VERSION_TAG_PREFIX,
    INPUT_EVENT_POINTER_TAG_PREFIX,
    NULL_DATA_VERSION,
    NULL_EVENT_POINTER,
    CachingStaleStatusResolver,
    StaleStatus,
    extract_data_version_from_entry,
    get_input_data_version_tag,
    get_input_event_pointer_tag,
)
from dagster._core.definitions.partitions.mapping import IdentityPartitionMapping
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.errors import raise_execution_interrupts
from dagster._core.execution.retries import RetryMode
from dagster._core.storage.defs_state.base import set_defs_state_storage
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._utils import iterate_with_context

__all__ = [
    "AssetGraphView",
    "CODE_VERSION_TAG",
    "CachingStaleStatusResolver",
    "DATA_VERSION_TAG",
    "DEFAULT_DATA_VERSION",
    "INPUT_DATA_VERSION_TAG_PREFIX",
    "INPUT_EVENT_POINTER_TAG_PREFIX",
    "IdentityPartitionMapping",
    "NULL_DATA_VERSION",
    "NULL_EVENT_POINTER",
    "ReconstructableJob",
    "ReconstructableRepository",
    "RetryMode",
    "SqlEventLogStorage",
    "SqlEventLogStorageTable",
    "StaleStatus",
    "TemporalContext",
    "extract_data_version_from_entry",
    "get_input_data_version_tag",
    "get_input_event_pointer_tag",
    "iterate_with_context",
    "raise_execution_interrupts",
    "set_defs_state_storage",
]
