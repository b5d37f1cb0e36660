"""The `metorigin` command: generate a demo cohort, run the study, query the store, open the UI.

This module holds the arguments of every command; each command's code is a module of its own
(run.py, study.py, store.py, ui.py, forget.py), imported when that command runs, over the session
layer (session.py).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import os
import sys
import threading
from pathlib import Path

from metorigin.core.errors import MetoriginError
from metorigin.core.study import EXECUTORS, PROFILES

DEMO_COHORT = Path("demo/cohort")


DEMO_STORE = Path("demo/store")


def main(argv: list[str] | None = None) -> int:
    _write_utf8()
    args = parser().parse_args(argv)
    module, name = args.handler.split(":")
    try:
        handler = getattr(importlib.import_module(f"metorigin.cli.{module}"), name)
    except MetoriginError as exc:  # the installation itself refuses to load (a model arm declared wrongly)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def command() -> None:
    """The `metorigin` console script: `main`, then `exit_without_teardown`. `main` itself returns,
    for callers in Python (tests)."""
    try:
        code = main()
    except SystemExit as exc:  # argparse's usage errors, --help
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    exit_without_teardown(code)


def exit_without_teardown(code: int) -> None:
    """Exit as the interpreter does, less its teardown of the imported stack. Tearing down ~1,800
    modules (dbt's, Dagster's, GX's) did nothing for the user and cost 1 to 1.7 s at the end of every
    command on 2 cores: a sixth of an unchanged re-run.

    The order is the interpreter's own (Py_FinalizeEx): first `threading._shutdown`, which joins the
    non-daemon threads and runs the thread pools' exit hooks, then the atexit handlers (logs flushed,
    locks released), then the streams flushed. The first step matters: joblib's loky workers (the
    study's fits) are stopped by such a hook; without it multiprocessing's atexit handler joins a
    worker that only exits after its 300 s idle timeout, and a study run took 5 minutes to return.
    Both calls are private to the standard library (no public way to run them before `os._exit`);
    tests/test_cli.py fails when either goes."""
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C while a pool winds down: go
        threading._shutdown()  # the interpreter's first exit step, see the docstring
    atexit._run_exitfuncs()  # then its second
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing left to say
            stream.flush()
    os._exit(code)


def _write_utf8() -> None:
    """Print UTF-8 whatever the locale says: under a C/ASCII locale (CI containers, cron) the printed
    Table 3's degenerate-interval mark would otherwise end the run with a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if (getattr(stream, "encoding", None) or "").lower().replace("-", "") != "utf8":
            with contextlib.suppress(AttributeError, ValueError):  # a stream that cannot be reconfigured keeps its own
                stream.reconfigure(encoding="utf-8", errors="replace")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metorigin", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    synth = sub.add_parser("synth", help="write a synthetic cohort folder, or add patients to one")
    where = synth.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="cohort folder to create")
    where.add_argument("--add-to", type=Path, help="a synthetic cohort folder to append --patients new patients to")
    synth.add_argument("--patients", type=_positive, default=1, help="with --add-to: how many patients to add")
    synth.add_argument("--unlabelled", action="store_true", help="with --add-to: leave their label cell empty")
    synth.add_argument("--seed", type=int, default=7)
    synth.add_argument("--scale", type=float, default=1.0, help="1.0 = 47 colorectal + 31 pancreatic patients")
    synth.add_argument("--matrix", type=int, default=256, help="in-plane voxels per axis")
    synth.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    synth.set_defaults(handler="run:cmd_synth")

    run = sub.add_parser("run", help="materialise the pipeline on a cohort")
    _add_run_arguments(run, required=True)
    run.add_argument("--select", default=None, help="Dagster asset selection, e.g. 'key:scans' (default: all)")
    run.add_argument(
        "--force",
        action="store_true",
        help="recompute the selection even where nothing changed (default: only what is stale or missing)",
    )
    run.add_argument(
        "--nnunet-model",
        type=Path,
        default=None,
        help="segment with this nnU-Net v2 model folder instead of the cohort's masks",
    )
    run.add_argument("--workers", type=int, default=0, help="processes for per-lesion work (default: one per core)")
    run.add_argument("--densenet-epochs", type=int, default=0, help="DenseNet epochs (default: the study's)")
    run.add_argument(
        "--split-repeats",
        type=_positive,
        default=0,  # 0: the study's setting
        metavar="N",
        help="refit the radiomics arm on N seeded test splits (the study's first) to show the spread of its test "
        "AUCs (default: the study's robustness.split_repeats: quick 1, paper 20)",
    )
    _add_executor_arguments(run)
    run.add_argument(
        "--replace-study",
        action="store_true",
        help="re-run a store that holds another study under this one (its results are recomputed)",
    )
    _add_session_arguments(run)
    run.set_defaults(handler="run:cmd_run")

    forget = sub.add_parser(
        "forget", help="erase every trace of a patient from a store (consent withdrawn); logged, not undoable"
    )
    forget.add_argument("--store", required=True, type=Path)
    forget.add_argument("--patient", required=True, help="the patient_id, as in patients.csv")
    forget.add_argument("--why", default="consent withdrawn", help="recorded in the store's erasure log")
    forget.add_argument("--no-wait", action="store_true", help="fail at once if another session uses the store")
    forget.set_defaults(handler="forget:cmd_forget")

    study = sub.add_parser("study", help="check a study file and show its effective settings and hashes")
    study.add_argument("--study", type=Path, default=None, help="study YAML (default: the built-in study)")
    study.add_argument("--profile", choices=PROFILES, default="quick")
    study.add_argument("--cohort", type=Path, default=None, help="also check the study against this cohort")
    study.add_argument(
        "--example",
        metavar="NAME",
        default=None,
        help="write out one of the study files metorigin ships (paper, sharp_kernels_colorectal_positive, "
        "cluster/slurm) to edit: to --out, else to the terminal",
    )
    study.add_argument("--out", type=Path, default=None, help="with --example: the file to write (never overwritten)")
    study.set_defaults(handler="study:cmd_study")

    sql = sub.add_parser("sql", help="run read-only SQL on the feature store")
    sql.add_argument("--store", required=True, type=Path)
    sql.add_argument("query")
    sql.add_argument("--csv", action="store_true", help="print every row as CSV instead of an aligned table")
    sql.add_argument(
        "--limit", type=_positive, default=10_000, help="rows the aligned table prints at most (default: 10,000)"
    )
    sql.add_argument(
        "--timeout", type=_positive, default=60, help="seconds after which the query is stopped (default: 60)"
    )
    sql.set_defaults(handler="store:cmd_sql")

    tables = sub.add_parser("tables", help="print Tables 1-3 (and the comparisons, the split repeats) of a store")
    tables.add_argument("--store", required=True, type=Path)
    tables.add_argument("--format", choices=("text", "csv", "latex"), default="text")
    tables.add_argument(
        "--table",
        action="append",
        choices=("table1", "table2", "table3", "comparisons", "split_repeats"),
        help="only this table (repeat for more); default: every table the store holds",
    )
    tables.set_defaults(handler="store:cmd_tables")

    report = sub.add_parser("report", help="write the study report (HTML, figures, tables) of a store")
    report.add_argument("--store", required=True, type=Path)
    report.add_argument("--cohort", type=Path, default=None, help="the cohort, for the report's provenance")
    report.add_argument("--out", type=Path, default=None, help="also copy the HTML page here")
    report.add_argument(
        "--anonymous", action="store_true", help="no images; patient, scan and lesion ids as sequence numbers"
    )
    report.set_defaults(handler="store:cmd_report")

    ui = sub.add_parser("ui", help="open the Dagster web UI on a cohort and store")
    _add_run_arguments(ui, required=True)
    _add_executor_arguments(ui)
    ui.add_argument("--workers", type=int, default=0, help="processes for per-lesion work (default: one per core)")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(handler="ui:cmd_ui")

    ibsi = sub.add_parser("ibsi-report", help="write the IBSI compliance table of the feature set")
    ibsi.add_argument("--out", type=Path, default=Path("docs/ibsi_compliance.md"))
    ibsi.set_defaults(handler="store:cmd_ibsi_report")

    models = sub.add_parser("models", help="the model registry of a store: list the models, promote one per arm")
    which = models.add_subparsers(required=True, metavar="ACTION")
    listing = which.add_parser("list", help="every registered model, the promoted ones marked")
    listing.add_argument("--store", required=True, type=Path)
    listing.set_defaults(handler="store:cmd_models_list")
    promote = which.add_parser("promote", help="make a model the one its arm scores new patients with")
    promote.add_argument(
        "model_ids", nargs="+", metavar="MODEL_ID", help="model ids of `metorigin models list`, one per arm"
    )
    promote.add_argument("--store", required=True, type=Path)
    promote.add_argument("--why", required=True, help="the reason, for the promotion log")
    promote.add_argument("--who", default=None, help="default: the user running the command")
    _add_session_arguments(promote)
    promote.set_defaults(handler="store:cmd_models_promote")

    validate = sub.add_parser(
        "validate", help="external validation: score a labelled cohort with another store's frozen models"
    )
    validate.add_argument("--models", required=True, type=Path, help="the store whose trained models are validated")
    validate.add_argument("--cohort", required=True, type=Path, help="the labelled cohort to validate on")
    validate.add_argument("--store", required=True, type=Path, help="the store for that cohort (created if missing)")
    validate.add_argument(
        "--study",
        type=Path,
        default=None,
        help="the cohort's own study file (e.g. wider inclusion criteria; its lesion, radiomics and slice settings "
        "must be the models'); default: the models store's study",
    )
    validate.add_argument(
        "--workers", type=int, default=0, help="processes for per-lesion work (default: one per core)"
    )
    _add_session_arguments(validate)
    validate.set_defaults(handler="run:cmd_validate")

    demo = sub.add_parser("demo", help="generate the demo cohort if missing, run everything, summarise")
    demo.add_argument("--cohort", type=Path, default=DEMO_COHORT)
    demo.add_argument("--store", type=Path, default=DEMO_STORE)
    demo.add_argument("--profile", choices=PROFILES, default="quick")
    _add_session_arguments(demo)
    demo.set_defaults(handler="run:cmd_demo")
    return parser


def _add_session_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-wait", action="store_true", help="fail at once when another session is using the store (default: wait)"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show Dagster's tracebacks here too (they always go to the log file)"
    )


def _add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the per-scan runs go (the study's `cluster` block gives the defaults)."""
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default=None,
        help="where the per-scan runs go: in_process (one scan after another), multiprocess (--scans-at-once at a "
        "time, a process each) or dask (their steps on a Dask cluster); default: the study's cluster.executor",
    )
    parser.add_argument(
        "--dask-address",
        default=None,
        metavar="tcp://HOST:PORT",
        help="an existing Dask scheduler for the per-scan steps (implies --executor dask); default: the study's "
        "cluster.address, else a cluster started here (cluster.local_workers, or cluster.slurm)",
    )
    parser.add_argument(
        "--scans-at-once", type=_positive, default=0, metavar="N", help="default: the study's cluster.scans_at_once"
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a count: give 1 or more")
    return value


def _add_run_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--cohort", required=required, type=Path, help="folder with patients.csv and scans.csv")
    parser.add_argument("--store", required=required, type=Path, help="store folder (created if missing)")
    parser.add_argument(
        "--study",
        type=Path,
        default=None,
        help="study YAML (`metorigin study --example paper --out FILE` writes one to start from); default: the "
        "seed paper's study as --profile",
    )
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="quick",
        help="built-in profile when no --study is given (a study file names its own `base`)",
    )
    parser.add_argument("--seed", type=int, default=None)


if __name__ == "__main__":
    sys.exit(main())
