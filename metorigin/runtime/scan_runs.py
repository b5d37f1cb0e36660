"""One `process_scan` run per scan that needs it, one scan after another or several at a time.

Where the scans run is the study's `cluster` (machine settings, core/study.py): `in_process`, one
scan after another in this process; `multiprocess`, `scans_at_once` scans at a time, each in one of
as many worker processes that load the definitions once; `dask`, the same concurrency, each run's
steps on a Dask cluster (cluster.py). A worker process coordinates a whole scan (its integrity
check first where only its files' times changed, then the rest), so a scan's runs never overlap.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from itertools import chain
from typing import Callable

import dagster as dg

from metorigin.core.config import RunConfig, activate
from metorigin.core.lifecycle import scans_with_results
from metorigin.core.store import Store
from metorigin.defs.common.names import PER_SCAN_GROUP, PROCESS_SCAN_JOB, SCAN_INTEGRITY
from metorigin.defs.common.partitions import included_scan_partitions
from metorigin.runtime.execution import (
    Execute,
    RunReport,
    executor,
    reconstructable_job,
)
from metorigin.runtime.staleness import (
    StaleStatus,
    fresh_partitions,
    stale_closure,
    status_resolver,
)

# Below this many scans to process, `multiprocess` processes them here: starting the worker
# processes (each imports the stack and loads the definitions) costs about what 5 scans do.
POOL_MIN_SCANS = 10


def process_scan_once(
    graph, instance: dg.DagsterInstance, execute: Execute, phase: set, scan_id: str, tags, full: bool
) -> str:
    """The runs one scan needs among `phase` (`full`: all of it): 'ok', 'FAILED' or 'skipped'.

    A scan whose files changed by time only (a copied cohort) first re-runs `scan_integrity`
    alone: it hashes the content, and when the bytes are the same its data version is too, so
    nothing after it is recomputed."""
    if full:
        selected = phase
    else:
        selected = stale_closure(instance, graph, phase, scan_id)
        if SCAN_INTEGRITY in selected and len(selected) > 1 and not _missing(instance, graph, phase, scan_id):
            if not execute(PROCESS_SCAN_JOB, {SCAN_INTEGRITY}, scan_id, tags).success:
                return "FAILED"
            selected = stale_closure(instance, graph, phase - {SCAN_INTEGRITY}, scan_id)
    if not selected:
        return "skipped"
    # Without `scan_integrity` selected, the scan's step still reads only files whose stored check
    # passed as they are now (defs/imaging/assets.py fingerprints them against it).
    return "ok" if execute(PROCESS_SCAN_JOB, selected, scan_id, tags).success else "FAILED"


def _missing(instance, graph, keys: set, partition: str) -> bool:
    resolver = status_resolver(instance, graph)
    return any(resolver.get_status(k, partition) == StaleStatus.MISSING for k in keys)


def process_scans(
    repository: dg.RepositoryDefinition,
    instance: dg.DagsterInstance,
    store: Store,
    phase: set,
    report: RunReport,
    progress: Callable[[str], None],
    config: RunConfig,
    tags: Mapping[str, str] | None = None,
    force: bool = False,
    scans: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """One `process_scan` run per scan (`scans`, each with the tags of its runs; by default every
    included scan) that has stale or missing assets among `phase` (all of them: `force`), where
    the run configuration's study says (`cluster`); each run tagged `tags` too."""
    graph = repository.asset_graph
    cluster = config.study().cluster
    ids = list(scans) if scans is not None else included_scan_partitions(instance, store)
    present = scans_with_results(store)
    work = [
        (scan_id, {**(tags or {}), **(scans or {}).get(scan_id, {})}, force or scan_id not in present)
        for scan_id in ids
    ]
    # The scans with nothing to do, found at once (asking each scan would take minutes at 10,000):
    # they need no run and no worker, and the rest decide whether starting workers pays.
    proven = fresh_partitions(instance, graph, phase, [s for s, _, full in work if not full])
    fresh = [s for s, _, full in work if not full and s in proven]
    work = [item for item in work if item[0] not in proven]
    # Worker processes open the instance again: an in-memory one (tests, the Python API) stays here.
    alone = cluster.executor == "in_process" or not instance.is_persistent
    at_once = 1 if alone else min(cluster.scans_at_once, len(work))
    if cluster.executor == "multiprocess" and len(work) < POOL_MIN_SCANS:
        at_once = 1
    if at_once > 1:
        # Each scan at a time gets its share of the cores for its per-lesion work: two scans each
        # extracting with a pool of two on two cores thrash (benchmarks/imaging_overhead.py).
        # (Only for scans in local processes: a Dask worker counts its own cores, cluster.py.)
        cores = config.study().radiomics.workers
        share = config.replace(workers=max(1, cores // at_once)) if cluster.executor == "multiprocess" else config
        outcomes = _in_worker_processes(share, work, phase, instance, report, at_once)
    else:
        execute = executor(repository.get_job, instance, report, steps_elsewhere=cluster.executor == "dask")
        outcomes = (
            (scan_id, process_scan_once(graph, instance, execute, phase, scan_id, t, f)) for scan_id, t, f in work
        )
    for done, (scan_id, outcome) in enumerate(chain(((s, "skipped") for s in fresh), outcomes), start=1):
        if outcome == "skipped":
            report.skipped[PER_SCAN_GROUP] = report.skipped.get(PER_SCAN_GROUP, 0) + 1
            continue
        report.scans_processed += outcome == "ok"  # a failed scan keeps its earlier results: nothing new
        progress(f"[{done}/{len(ids)}] {scan_id}: {outcome}")
    if report.skipped.get(PER_SCAN_GROUP):
        progress(f"{report.skipped[PER_SCAN_GROUP]} of {len(ids)} scans unchanged: skipped")


def _in_worker_processes(
    config: RunConfig, work, phase, instance, report: RunReport, at_once: int
) -> Iterator[tuple[str, str]]:
    """The scans `at_once` at a time in as many new processes (spawned: a forked Dagster process
    would share its parent's database connections), each loading the definitions once."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        at_once, context, initializer=_start_worker, initargs=(instance.get_ref(), config.to_json())
    ) as pool:
        futures = [pool.submit(_run_scan, scan_id, tags, full, phase) for scan_id, tags, full in work]
        for future in as_completed(futures):
            scan_id, outcome, theirs = future.result()
            report.merge(theirs)
            yield scan_id, outcome


_worker: dict = {}  # a worker process's definitions, graph and instance, loaded once


def _start_worker(instance_ref, config: str) -> None:
    """A pool worker: this run's configuration (core/config.py), its log in the run's log file."""
    run_config = RunConfig.from_json(config)
    activate(run_config)
    if run_config.run_log:  # Dagster's console log looks up sys.stderr at every write
        sys.stderr = open(run_config.run_log, "a", buffering=1)
    # The definitions as a run process loads them: from the code location, in this environment.
    repository = reconstructable_job(PROCESS_SCAN_JOB).get_repository_definition()
    _worker.update(
        repository=repository,
        instance=dg.DagsterInstance.from_ref(instance_ref),
        dask=run_config.study().cluster.executor == "dask",
    )


def _run_scan(scan_id: str, tags: dict, full: bool, phase: set) -> tuple[str, str, RunReport]:
    repository, instance, report = _worker["repository"], _worker["instance"], RunReport()
    execute = executor(repository.get_job, instance, report, steps_elsewhere=_worker["dask"])
    outcome = process_scan_once(repository.asset_graph, instance, execute, phase, scan_id, tags, full)
    return scan_id, outcome, report
