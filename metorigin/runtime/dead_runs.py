"""Runs whose process died without ending them, found and ended, so a killed process never blocks a
store; and the wait for the store's `duckdb_write` slot, said aloud and interruptible.

A run killed with `kill -9` (or by the OOM killer, or a power cut) stays STARTED: Dagster's default
run launcher cannot check a run worker's health. Such a ghost keeps the `duckdb_write` slot of the
step it was in, so the next run's dbt step waits for ever (inside Dagster's executor, where SIGTERM
is only noted, not acted on), and the sensors wait on "1 run in flight" at every tick. Marking it
failed does not free its slot.

Every run carries its process's pid, host and start time (defs/common/run_owner.py). `release`
marks failed each run left in progress on this host by a process that no longer exists (or whose
pid now belongs to a later process), with the reason, and frees every slot held by a run that has
ended; a run in progress on another host is reported, never touched: its process cannot be checked
from here. `metorigin run` and `metorigin ui` call it when they start, and the sensors on every
tick. A run without the tags (made by an older metorigin, or killed before its first step) is left
to Dagster's run monitoring and to `metorigin ui`'s clean-up of the runs it started.

The slot's methods belong to Dagster's event log storage (`instance.event_log_storage`), whose
class is public but undocumented: the killed-run test in tests/test_models_in_use.py exercises each.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import psutil

from metorigin.core.lease import TELL_EVERY_S
from metorigin.defs.common.names import DUCKDB_WRITE_POOL, FINISHED_STATUSES
from metorigin.defs.common.run_owner import HOST_TAG, PID_TAG, STARTED_TAG

IN_PROGRESS = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)
SAME_PROCESS_S = 1.0  # start times that differ by less are the same process (they are stored rounded)


@dataclass(frozen=True)
class Owner:
    """The process a run's tags name."""

    pid: int
    host: str
    started: float | None

    @property
    def here(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> bool:
        """Whether the process still runs (a zombie has ended; a reused pid is another process)."""
        try:
            process = psutil.Process(self.pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
            return self.started is None or abs(process.create_time() - self.started) < SAME_PROCESS_S
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:  # another user's process: it exists
            return True

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


def owner_of(run: dg.DagsterRun) -> Owner | None:
    tags = run.tags
    if PID_TAG not in tags or HOST_TAG not in tags:
        return None
    try:
        started = float(tags[STARTED_TAG]) if STARTED_TAG in tags else None
        return Owner(int(tags[PID_TAG]), tags[HOST_TAG], started)
    except ValueError:  # a tag edited by hand
        return None


def release(instance: dg.DagsterInstance, by: str) -> list[str]:
    """End the runs of this store whose process died on this host, free the slots of every run that
    has ended; lines saying what was done, and which runs in progress on other hosts could not be
    checked. `by`: who found them (for the run's failure message)."""
    lines = []
    for run in instance.get_runs(dg.RunsFilter(statuses=list(IN_PROGRESS))):
        owner = owner_of(run)
        if owner is None or (owner.here and owner.alive()):
            continue
        if not owner.here:
            lines.append(
                f"run {run.run_id} ({run.job_name}) is in progress on {owner.host} ({owner}): not checked from "
                f"{socket.gethostname()}. If that process is gone, `metorigin run` on {owner.host} ends it, or mark "
                "the run failed in the UI (Terminate)"
            )
            continue
        instance.report_run_failed(
            run, message=f"its process ({owner}) ended without finishing it (killed?): marked failed by {by}"
        )
        lines.append(f"run {run.run_id} ({run.job_name}): its process ({owner}) had died; marked failed")
    storage = instance.event_log_storage
    for run_id in storage.get_concurrency_run_ids():
        run = instance.get_run_by_id(run_id)
        if run is None or run.status in FINISHED_STATUSES:
            storage.free_concurrency_slots_for_run(run_id)
            lines.append(f"run {run_id}: its concurrency slots freed (it had ended holding them)")
    return lines


def slot_holders(instance: dg.DagsterInstance, pool: str = DUCKDB_WRITE_POOL) -> list[str]:
    """The runs holding every slot of the pool (none while a slot is free)."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    limit = info.limit if info.limit is not None else info.slot_count
    if not limit or len(info.claimed_slots) < limit:
        return []
    return sorted({slot.run_id for slot in info.claimed_slots})


def wait_for_slot(
    instance: dg.DagsterInstance,
    tell: Callable[[str], None],
    pool: str = DUCKDB_WRITE_POOL,
    every_s: float = TELL_EVERY_S,
    poll_s: float = 1.0,
) -> None:
    """Wait here, not inside Dagster's executor, while other runs hold the pool: here a SIGTERM ends
    the process and a Ctrl-C raises at once, and every `every_s` the wait says who holds the slot
    and for how long. A holder that dies meanwhile is released at the next poll (`release`)."""
    start = time.monotonic()
    told = -every_s
    while holders := slot_holders(instance, pool):
        waited = time.monotonic() - start
        if waited - told >= every_s:
            who = "; ".join(_describe(instance, run_id) for run_id in holders)
            tell(f"waiting {waited:.0f} s for the {pool} slot, held by {who}")
            told = waited
        time.sleep(poll_s)
        for line in release(instance, "metorigin run, waiting for its slot"):
            tell(line)


def _describe(instance: dg.DagsterInstance, run_id: str) -> str:
    run = instance.get_run_by_id(run_id)
    record = instance.get_run_record_by_id(run_id)
    if run is None or record is None:
        return f"run {run_id}"
    since = record.start_time or record.create_timestamp.timestamp()
    owner = owner_of(run)
    return f"run {run_id} ({run.job_name}, {owner or 'process unknown'}, for {time.time() - since:.0f} s)"
