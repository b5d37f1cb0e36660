"""The session layer under every command: the run configuration from the flags, the study checked
once, the store's lease and instance, the definitions, the run log, and the summary printed after.

A command module parses nothing itself and queries nothing: it asks this layer for a session and
the report modules for what to print.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import dagster as dg

from metorigin.core.config import RunConfig
from metorigin.core.errors import MetoriginError, StudyFileError
from metorigin.core.forgetting import forgotten_patients
from metorigin.core.lease import store_session
from metorigin.core.manifest import bind_study
from metorigin.core.store import Store
from metorigin.core.study import get_settings, run_problems
from metorigin.core.study_file import load_study
from metorigin.definitions import build_definitions
from metorigin.defs.common.names import STUDY_GROUP
from metorigin.defs.study.schedules import retrain_problems
from metorigin.imaging.forgotten import NONE_FORGOTTEN
from metorigin.imaging.radiomics_params import params_file_problem
from metorigin.imaging.study_fit import class_problems, study_problems
from metorigin.report.store_summary import summary_lines
from metorigin.runtime.dead_runs import release as release_dead_runs
from metorigin.runtime.home import get_instance
from metorigin.study.classifiers import grid_problems

TERMINAL_LINE = 300  # characters of a log line shown in the terminal (dbt's command line is ~15,000)


def run_config(args) -> RunConfig:
    """The run configuration of a command's flags (`run`, `ui`, `validate`): resolved once here."""
    return RunConfig.of(
        args.cohort,
        args.store,
        args.study,
        getattr(args, "nnunet_model", None),
        profile=args.profile,
        seed=args.seed,
        workers=getattr(args, "workers", 0),
        densenet_epochs=getattr(args, "densenet_epochs", 0),
        split_repeats=getattr(args, "split_repeats", 0),
        executor=getattr(args, "executor", None) or "",
        dask_address=getattr(args, "dask_address", None) or "",
        scans_at_once=getattr(args, "scans_at_once", 0),
    )


def store_config(store: Path) -> RunConfig:
    """A store's own study (`<store>/study.yaml`), for steps outside `metorigin run` (promote,
    forget): what the shell or other flags say of seed, profile or epochs does not apply."""
    return RunConfig(store=str(store), study_file=str(Path(store) / "study.yaml"))


def store_definitions(store: Path):
    """The Definitions of a store's own study and its instance."""
    return build_definitions(store_config(store)), get_instance(store)


def in_session(args, work) -> int:
    """Check the cohort and study, hold the store's lease, bind the study, and run `work(defs,
    instance)` (-> RunReport) with the run log; print the summary. What `run` and `validate` share."""
    args.cohort, args.store = args.cohort.absolute(), args.store.absolute()  # steps may change the working folder
    if not (args.cohort / "scans.csv").is_file():
        print(
            f"error: {args.cohort} is not a cohort folder (no scans.csv); "
            f"create one or try `metorigin synth --out {args.cohort}`",
            file=sys.stderr,
        )
        return 2
    problem = selection_problem(args.select)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    log_path = new_log_path(args.store)
    config = run_config(args).replace(run_log=str(log_path))
    try:
        study = checked_study(config, args.study, args.cohort)
        defs = build_definitions(config)
        if selects_study(defs, args.select):  # only the study needs both classes (and enough of each)
            source = str(args.study or f"the built-in {study.profile} study")
            refuse(class_problems(args.cohort, study, source, forgotten_patients(Store(args.store))))
        instance = get_instance(args.store)  # refuses an instance that serves another store
        with store_session(args.store, "metorigin run", wait=not args.no_wait, on_wait=tell):
            for line in release_dead_runs(instance, "metorigin run"):  # a killed run never blocks the store
                print(f"note: {line}", flush=True)
            for step in bind_study(Store(args.store), study, replace=args.replace_study):
                print(f"store {args.store} migrated: {step}", flush=True)
            print(f"study: {study.name} (hash {study.study_hash()}, seed {study.seed})", flush=True)
            with where_scans_run(config) as (where, placed):
                print(where, flush=True)
                defs = defs if placed == config else build_definitions(placed)
                with run_log(log_path, args.verbose):
                    try:
                        report = work(defs, instance)
                    except ValueError as exc:
                        print(f"error: {exc}", file=sys.stderr)
                        return 2
    except MetoriginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary(report, args.store))
    print(f"full log, with Dagster's tracebacks: {log_path}")
    return 0 if report.ok else 1


@contextlib.contextmanager
def where_scans_run(config: RunConfig):
    """The per-scan runs' executor as the study and the flags set it; for Dask, a scheduler whose
    workers have this run's configuration and see the store (a local cluster or Slurm jobs are
    started here and stopped after). Yields a line saying where the scans run, and the
    configuration with the scheduler's address."""
    cluster = config.study().cluster
    if cluster.executor != "dask":
        at_once = 1 if cluster.executor == "in_process" else cluster.scans_at_once
        yield f"scans: {cluster.executor} executor, up to {at_once} at a time", config
        return
    from metorigin.runtime.cluster import open_cluster, prepare_workers

    with open_cluster(cluster) as address:
        config = config.replace(dask_address=address)  # the per-scan executor sends the steps there
        prepare_workers(address, config, cluster.resource_timeout_s, needed={"CPU", "GPU"})
        yield f"scans: dask executor on {address}, {cluster.scans_at_once} at a time", config


def tell(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def selection_problem(selection: str | None) -> str | None:
    """A --select that does not parse, refused before anything runs (a bad argument: exit 2)."""
    if not selection:
        return None
    try:
        dg.AssetSelection.from_string(selection)
    except dg.DagsterError as exc:  # Dagster's selection error subclasses it (its own class is private)
        reason = str(exc).strip().splitlines()[0]
        return (
            f"--select {selection!r} is not an asset selection ({reason}). Fix: e.g. --select 'key:scans', "
            "'group:imaging', 'not group:study', '*radiomics_features' (Dagster's selection syntax)"
        )
    return None


def load_study_file(study_file: Path | None, profile: str, seed: int | None):
    return load_study(study_file, seed) if study_file else get_settings(profile, seed)


def study_file_problems(
    study,
    study_file: Path | None,
    cohort: Path | None,
    for_run: bool = True,
    classes: bool = True,
    store: Path | None = None,
) -> list:
    """Everything that makes the study unusable here: what a run of it lacks, unknown grid parameters,
    and (given a cohort) a study that does not fit it (`classes`: its two classes present too), less
    the patients `store` forgot."""
    source = str(study_file or f"the built-in {study.profile} study")
    problems = (run_problems(study, source) if for_run else []) + grid_problems(study.models, source)
    if problem := params_file_problem(Path(study.radiomics.params_file)):
        problems.append(
            StudyFileError(
                source,
                "radiomics.params_file",
                f"{study.radiomics.params_file}: {problem}",
                "fix the file (pyradiomics' documentation, 'Parameter File'), or use 'default' (metorigin's own)",
            )
        )
    problems += retrain_problems(study, source)
    if problems or not cohort:
        return problems
    return study_problems(cohort, study, source, classes, forgotten_patients(Store(store)) if store else NONE_FORGOTTEN)


def checked_study(config: RunConfig, study_file: Path | None, cohort: Path):
    """The study, validated on its own and against the cohort: every refusal of the study or the
    cohort happens here, before anything is computed or stored (even the store folder), but for
    the classes, which only a selection of the study's assets needs (`in_session`). Where the scans
    run is the machine's choice, not the study's: the store keeps the study without it."""
    study = config.replace(executor="", dask_address="", scans_at_once=0).study()
    refuse(study_file_problems(study, study_file, cohort, classes=False, store=Path(config.store)))
    return study


def refuse(problems: list[StudyFileError]) -> None:
    """The first problem raised, with the count of the others."""
    if problems:
        raise StudyFileError(
            problems[0].file, problems[0].key, problems[0].problem, problems[0].fix, more=len(problems) - 1
        )


def selects_study(defs: dg.Definitions, selection: str | None) -> bool:
    """Whether the selection reaches an asset of the study group (what needs both classes)."""
    graph = defs.resolve_asset_graph()
    chosen = dg.AssetSelection.from_string(selection) if selection else dg.AssetSelection.all()
    return bool(chosen.resolve(graph) & dg.AssetSelection.groups(STUDY_GROUP).resolve(graph))


class ConciseStderr:
    """Dagster's console log with the tracebacks cut off (they go, with everything else, to the log
    file): the terminal shows each record's first part, and the run summary says what to fix.

    Dagster writes a record's error after a blank line (`<header>\n\n<error and stack>`); the
    coloured console handler looks up `sys.stderr` at every write, so swapping it here is enough."""

    def __init__(self, terminal, log):
        self.terminal, self.log = terminal, log

    def write(self, text: str) -> int:
        self.log.write(text)
        head, blank, _ = text.partition("\n\n")
        self.terminal.write(clip(head) + ("\n" if blank else ""))
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()

    def isatty(self) -> bool:
        return self.terminal.isatty()


class Tee(ConciseStderr):
    """Everything to the terminal and the log file (--verbose)."""

    def write(self, text: str) -> int:
        self.log.write(text)
        return self.terminal.write(text)


def clip(text: str) -> str:
    return "\n".join(
        line if len(line) <= TERMINAL_LINE else f"{line[:TERMINAL_LINE]} ... (cut: the log file has all of it)"
        for line in text.split("\n")
    )


def new_log_path(store: Path) -> Path:
    """A run's log file, `<store>/logs/run-<time>-<pid>.log` (created when the run starts; the pid
    keeps two sessions started in the same second apart, one waiting for the other's lease)."""
    return Path(store) / "logs" / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


@contextlib.contextmanager
def run_log(path: Path, verbose: bool):
    """The run's log file; the terminal gets it without tracebacks unless --verbose. Worker
    processes write to it too (the run configuration's `run_log`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as log:
        terminal = sys.stderr
        sys.stderr = Tee(terminal, log) if verbose else ConciseStderr(terminal, log)
        try:
            yield path
        finally:
            sys.stderr = terminal


def summary(report, store_path: Path) -> str:
    """What a run did (from its report) and what the store holds now (from its tables)."""
    lines = ["", f"{len(report.run_ids)} run(s): {'succeeded' if report.ok else 'FAILED'}"]
    skipped = report.skipped.items()
    if skipped:
        lines.append(
            "unchanged, not recomputed (--force to recompute): "
            + ", ".join(f"{n} {'scans' if group == 'imaging' else group + ' assets'}" for group, n in skipped)
        )
    if report.materialized:
        lines.append("materialised: " + ", ".join(f"{k} ({n})" if n > 1 else k for k, n in report.materialized.items()))
    for failure in report.step_failures:
        lines.append(f"step failed: {failure}")
    for check in report.blocked_by:
        lines.append(f"stopped downstream of blocking check: {check}")
    for check, problems in report.failed_checks:
        lines.append(f"check failed: {check}")
        lines += [f"  - {p}" for p in problems.splitlines() if p.strip()]
    for check, messages in report.warnings:
        lines.append(f"warning: {check}")
        lines += [f"  - {m}" for m in messages.splitlines() if m.strip()]
    lines += [f"note: {n}" for n in report.notices]
    return "\n".join(lines + summary_lines(Store(store_path), store_path, report.run_ids))


def aligned(frame) -> str:
    """Left-aligned columns (pandas right-aligns text), every cell in full."""
    text = frame.astype(str)
    widths = {c: max([len(str(c)), *text[c].str.len()]) for c in text}
    formatters = {c: (lambda w: lambda v: f"{v:<{w}}")(widths[c]) for c in text}
    return text.to_string(index=False, justify="left", formatters=formatters)


def published_store(path: Path):
    """The store at `path` if it has a feature store to read; else None, with the fix printed."""
    store = Store(path)
    if store.duckdb_path.exists():
        return store
    print(f"error: no feature store at {store.duckdb_path}; run `metorigin run --store {path}` first", file=sys.stderr)
    return None
