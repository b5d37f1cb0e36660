"""`metorigin ui`: the Dagster web UI, with its daemon, on a cohort and store (`dagster dev` in a
process group of its own, stopped with everything it started)."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg

from metorigin.cli import group_reaper
from metorigin.cli.session import load_study_file, run_config
from metorigin.core.config import child_environment
from metorigin.core.errors import MetoriginError, StudyFileError
from metorigin.core.manifest import read_manifest
from metorigin.core.store import Store
from metorigin.defs.common.names import LAUNCHED_HERE
from metorigin.runtime.dead_runs import IN_PROGRESS, release
from metorigin.runtime.home import use_store_instance


def cmd_ui(args) -> int:
    try:
        args.study = _ui_study(args)
        home = use_store_instance(args.store)
    except MetoriginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = run_config(args)
    cluster = config.study().cluster
    if cluster.executor == "dask" and not cluster.address:
        print(
            "error: under the UI the daemon's runs need a running Dask scheduler: give --dask-address tcp://HOST:PORT "
            "(or the study's cluster.address); docs/cluster.md says how to start one",
            file=sys.stderr,
        )
        return 2
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "dev", "-m", "metorigin.definitions", "-h", args.host, "-p", str(args.port)]
    print(
        f"Dagster UI on http://{args.host}:{args.port} (cohort {args.cohort}, store {args.store}, instance {home})",
        flush=True,
    )
    # The code location and the runs its daemon launches build their definitions from this file.
    config.write_for_instance(home)
    _release_dead_runs(home)
    return _serve(command, home)


def _ui_study(args) -> Path | None:
    """The study the UI (and so the daemon) runs: the one the store holds (`<store>/study.yaml`, which
    keeps its nnU-Net folder and DenseNet epochs too) unless another is given, and then only that one:
    the daemon's runs never rewrite a store under another study."""

    stored = Path(args.store) / "study.yaml"
    if args.study is None and args.seed is None and stored.is_file():
        print(f"study: the store's own, {stored}", flush=True)
        return stored
    bound = read_manifest(Store(args.store)).get("study_hash") if stored.is_file() else None
    asked = load_study_file(args.study, args.profile, args.seed).study_hash()
    if bound and asked != bound:
        raise StudyFileError(
            str(args.study or f"the built-in {args.profile} study"),
            "",
            f"the store {args.store} holds another study (hash {bound}; this one has {asked})",
            "open the UI without --study, --profile and --seed (it then runs the store's own study), or re-run the "
            "store under this study first with `metorigin run ... --replace-study`",
        )
    return args.study


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGKILL when the parent dies (prctl PR_SET_PDEATHSIG)."""

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))


def _serve(command: list[str], home: Path) -> int:
    """Run `dagster dev` until it exits or this process is told to stop.

    `dagster dev` shuts its webserver, daemon and code server down on SIGINT (Ctrl-C) but ignores
    SIGTERM, which is what service managers, `kill` and `timeout` send: both become a SIGINT to it.
    What of its process group remains once it exited (its code server can outlive it, and runs the
    daemon launched) gets SIGTERM, then SIGKILL; runs it left started are marked failed, so nothing
    waits on them (the store's sensors wait while a run is in flight). Should this process die
    without running any of that (SIGKILL, OOM), the kernel kills `dagster dev` and the group reaper
    stops the rest (group_reaper.py)."""
    environment = child_environment(DAGSTER_HOME=str(home))  # the store's instance
    server = subprocess.Popen(command, env=environment, start_new_session=True, preexec_fn=_die_with_parent)

    def stop(signum, _frame):
        server.send_signal(signal.SIGINT)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    reaper = None
    try:
        reaper = group_reaper.start(server.pid)
        server.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        group_reaper.stop_group(server.pid)
        server.wait()
        if reaper is not None:
            group_reaper.stand_down(reaper)  # the group is stopped: its number is no longer ours
    _fail_runs_left_started(home)
    return 0 if server.returncode in (0, -signal.SIGINT, 130) else server.returncode


def _release_dead_runs(home: Path) -> None:
    """Runs a killed `metorigin run` or `metorigin ui` left in progress: ended before the daemon
    starts, so its queue and the sensors do not wait on them (runtime/dead_runs.py)."""
    instance = dg.DagsterInstance.from_config(str(home))
    for line in release(instance, "metorigin ui"):
        print(f"note: {line}", flush=True)
    instance.dispose()


def _fail_runs_left_started(home: Path) -> None:
    """Runs the stopped server had started (not `metorigin run`'s own, which run in its process)."""

    instance = dg.DagsterInstance.from_config(str(home))
    ((tag, value),) = LAUNCHED_HERE.items()
    for run in instance.get_runs(dg.RunsFilter(statuses=list(IN_PROGRESS))):
        if run.tags.get(tag) != value:
            instance.report_run_failed(run, message="metorigin ui stopped while the run was in progress")
            print(f"run {run.run_id} ({run.job_name}) was in progress: marked failed", flush=True)
    instance.dispose()
