"""The run queue of a store's instance: Dagster's queued run coordinator, and every run that writes
the whole store tagged as such, whatever job launched it.

The named jobs that write the whole store carry `WRITES_STORE` (defs/jobs.py), which dagster.yaml
admits one at a time. A run launched from an asset page, a partition dialog or "Materialize all"
in the UI is a run of Dagster's implicit `__ASSET_JOB` without those tags: this coordinator adds
them to every run but the per-scan ones before the run is queued, so the limit holds for the UI's
runs too. (`metorigin run` executes its runs in its own process, under the store's writer lease.)
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from metorigin.defs.common.names import PROCESS_SCAN_JOB, PROCESS_SCANS_JOB, WRITES_STORE

# Run tags of a run over scan partitions: one scan's, or a range of a backfill run.
PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start")


def writes_store(job_name: str, tags: Mapping[str, str]) -> bool:
    """Every run but a per-scan one (a `process_scan` run, a `process_scans` batch, a run of scan
    partitions), which writes only its scans' files."""
    if job_name in (PROCESS_SCAN_JOB, PROCESS_SCANS_JOB):
        return False
    return not any(tag in tags for tag in PARTITION_TAGS)


class StoreWritersOneAtATime(dg.QueuedRunCoordinator):
    """`QueuedRunCoordinator` (configured as in dagster.yaml) that tags the store's writers first."""

    def submit_run(self, context: dg.SubmitRunContext) -> dg.DagsterRun:
        run = context.dagster_run
        if writes_store(run.job_name, run.tags) and not WRITES_STORE.keys() <= run.tags.keys():
            self._instance.add_run_tags(run.run_id, WRITES_STORE)
            tagged = self._instance.get_run_by_id(run.run_id)
            context = dg.SubmitRunContext(tagged, context.workspace)
        return super().submit_run(context)
