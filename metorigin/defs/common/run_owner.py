"""Which process on which host executes a run: the tags every run carries from its start, so a run
whose process died (`kill -9`, the OOM killer, a power cut) can be told from one still working.

Dagster's default run launcher cannot check a run worker's health (its run monitoring needs a
launcher that can), and a run whose process died stays STARTED for ever, holding the store's
`duckdb_write` slot and the run queue's store-writer limit. `runtime/dead_runs.py` finds such runs
by these tags. A process id can be reused after its process ended, so the tags keep its start time
too: a reused pid is another process, and the run is still recognised as abandoned.
"""

from __future__ import annotations

import os
import socket

import dagster as dg
import psutil

PID_TAG = "metorigin/pid"
HOST_TAG = "metorigin/host"
STARTED_TAG = "metorigin/process_started"  # the process's start time (seconds since the epoch)


def owner_tags() -> dict[str, str]:
    """This process, as the tags of a run it executes."""
    started = psutil.Process(os.getpid()).create_time()
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(), STARTED_TAG: f"{started:.2f}"}


def claim_run(instance: dg.DagsterInstance, run: dg.DagsterRun | None) -> None:
    """Tag a run with this process unless it was tagged when it was made: a run the daemon launched
    learns its worker's pid here, when its first step's resources are set up in that process.
    (`metorigin run` tags its runs itself, runtime/execution.py.)"""
    if run is not None and PID_TAG not in run.tags:
        instance.add_run_tags(run.run_id, owner_tags())
