"""The `metorigin` command: generate a demo cohort, run the study, query the store, open the UI."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

from metorigin.core.study import EXECUTORS, PROFILES

DEMO_COHORT = Path("demo/cohort")
DEMO_STORE = Path("demo/store")


def main(argv: list[str] | None = None) -> int:
    _write_utf8()
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _write_utf8() -> None:
    """Print UTF-8 whatever the locale says: under a C/ASCII locale (CI containers, cron) the printed
    Table 3's degenerate-interval mark would otherwise end the run with a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if (getattr(stream, "encoding", None) or "").lower().replace("-", "") != "utf8":
            with contextlib.suppress(AttributeError, ValueError):  # a stream that cannot be reconfigured keeps its own
                stream.reconfigure(encoding="utf-8", errors="replace")


def _parser() -> argparse.ArgumentParser:
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
    synth.set_defaults(handler=cmd_synth)

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
    run.set_defaults(handler=cmd_run)

    forget = sub.add_parser(
        "forget", help="erase every trace of a patient from a store (consent withdrawn); logged, not undoable"
    )
    forget.add_argument("--store", required=True, type=Path)
    forget.add_argument("--patient", required=True, help="the patient_id, as in patients.csv")
    forget.add_argument("--why", default="consent withdrawn", help="recorded in the store's erasure log")
    forget.add_argument("--no-wait", action="store_true", help="fail at once if another session uses the store")
    forget.set_defaults(handler=cmd_forget)

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
    study.set_defaults(handler=cmd_study)

    sql = sub.add_parser("sql", help="run read-only SQL on the feature store")
    sql.add_argument("--store", required=True, type=Path)
    sql.add_argument("query")
    sql.add_argument("--csv", action="store_true", help="print CSV instead of an aligned table")
    sql.set_defaults(handler=cmd_sql)

    tables = sub.add_parser("tables", help="print Tables 1-3 (and the comparisons, the split repeats) of a store")
    tables.add_argument("--store", required=True, type=Path)
    tables.add_argument("--format", choices=("text", "csv", "latex"), default="text")
    tables.add_argument(
        "--table",
        action="append",
        choices=("table1", "table2", "table3", "comparisons", "split_repeats"),
        help="only this table (repeat for more); default: every table the store holds",
    )
    tables.set_defaults(handler=cmd_tables)

    report = sub.add_parser("report", help="write the study report (HTML, figures, tables) of a store")
    report.add_argument("--store", required=True, type=Path)
    report.add_argument("--cohort", type=Path, default=None, help="the cohort, for the report's provenance")
    report.add_argument("--out", type=Path, default=None, help="also copy the HTML page here")
    report.add_argument(
        "--anonymous", action="store_true", help="no images; patient, scan and lesion ids as sequence numbers"
    )
    report.set_defaults(handler=cmd_report)

    ui = sub.add_parser("ui", help="open the Dagster web UI on a cohort and store")
    _add_run_arguments(ui, required=True)
    _add_executor_arguments(ui)
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(handler=cmd_ui)

    ibsi = sub.add_parser("ibsi-report", help="write the IBSI compliance table of the feature set")
    ibsi.add_argument("--out", type=Path, default=Path("docs/ibsi_compliance.md"))
    ibsi.set_defaults(handler=cmd_ibsi_report)

    models = sub.add_parser("models", help="the model registry of a store: list the models, promote one per arm")
    which = models.add_subparsers(required=True, metavar="ACTION")
    listing = which.add_parser("list", help="every registered model, the promoted ones marked")
    listing.add_argument("--store", required=True, type=Path)
    listing.set_defaults(handler=cmd_models_list)
    promote = which.add_parser("promote", help="make a model the one its arm scores new patients with")
    promote.add_argument(
        "model_ids", nargs="+", metavar="MODEL_ID", help="model ids of `metorigin models list`, one per arm"
    )
    promote.add_argument("--store", required=True, type=Path)
    promote.add_argument("--why", required=True, help="the reason, for the promotion log")
    promote.add_argument("--who", default=None, help="default: the user running the command")
    _add_session_arguments(promote)
    promote.set_defaults(handler=cmd_models_promote)

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
    validate.set_defaults(handler=cmd_validate)

    demo = sub.add_parser("demo", help="generate the demo cohort if missing, run everything, summarise")
    demo.add_argument("--cohort", type=Path, default=DEMO_COHORT)
    demo.add_argument("--store", type=Path, default=DEMO_STORE)
    demo.add_argument("--profile", choices=PROFILES, default="quick")
    _add_session_arguments(demo)
    demo.set_defaults(handler=cmd_demo)
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


def _placement(args) -> dict:
    """The executor arguments (`_add_executor_arguments`) as `_export_environment` takes them."""
    return {"executor": args.executor, "dask_address": args.dask_address, "scans_at_once": args.scans_at_once}


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
        default=Path(os.environ["METORIGIN_STUDY"]) if os.environ.get("METORIGIN_STUDY") else None,
        help="study YAML (see examples/); default: $METORIGIN_STUDY, else the seed paper's study as --profile",
    )
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="quick",
        help="built-in profile when no --study is given (a study file names its own `base`)",
    )
    parser.add_argument("--seed", type=int, default=None)


def _export_environment(
    cohort: Path,
    store: Path,
    profile: str,
    seed: int | None,
    study: Path | None = None,
    nnunet_model: Path | None = None,
    workers: int = 0,
    densenet_epochs: int = 0,
    split_repeats: int = 0,
    executor: str | None = None,
    dask_address: str | None = None,
    scans_at_once: int = 0,
) -> None:
    """The Definitions read their resources from the environment, so every process agrees. Each
    variable is set or removed: one left over in the shell must not make the run differ from what
    was checked and bound here."""
    values = {
        "METORIGIN_COHORT": cohort.absolute(),
        "METORIGIN_STORE": store.absolute(),
        "METORIGIN_PROFILE": profile,
        "METORIGIN_STUDY": study and study.absolute(),
        "METORIGIN_SEED": seed,
        "METORIGIN_NNUNET_MODEL": nnunet_model and nnunet_model.absolute(),
        "METORIGIN_WORKERS": workers or None,
        "METORIGIN_DENSENET_EPOCHS": densenet_epochs or None,
        "METORIGIN_SPLIT_REPEATS": split_repeats or None,
        "METORIGIN_EXECUTOR": executor,
        "METORIGIN_DASK_ADDRESS": dask_address,
        "METORIGIN_SCANS_AT_ONCE": scans_at_once or None,
    }
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = str(value)


def cmd_synth(args) -> int:
    from metorigin.imaging.synth import SynthConfig, append_patients, generate_cohort

    if args.add_to:
        if not (args.add_to / "patients.csv").is_file():
            print(f"error: {args.add_to} is not a cohort folder (no patients.csv)", file=sys.stderr)
            return 2
        added = append_patients(args.add_to, args.patients, args.seed, unlabelled=args.unlabelled, workers=args.workers)
        kind = "unlabelled " if args.unlabelled else ""
        print(f"added {len(added)} {kind}patient(s) to {args.add_to}: {', '.join(added)}")
        return 0

    config = SynthConfig(seed=args.seed, scale=args.scale, matrix=args.matrix, workers=args.workers)
    counts = config.patient_counts()
    print(
        f"generating {sum(counts.values())} patients ({counts['colorectal']} colorectal, "
        f"{counts['pancreatic']} pancreatic) into {args.out}",
        flush=True,
    )
    start = time.monotonic()
    generate_cohort(args.out, config, progress=_progress("scans written"))
    print(f"\ndone in {time.monotonic() - start:.0f} s: {args.out}")
    return 0


def _progress(label: str):
    def report(done: int, total: int) -> None:
        end = "\n" if done == total or not sys.stdout.isatty() else "\r"
        if sys.stdout.isatty() or done == total or done % 10 == 0:
            print(f"  {done}/{total} {label}", end=end, flush=True)

    return report


def cmd_run(args) -> int:
    from metorigin.runtime.runner import run_selection

    return _in_session(args, lambda defs, instance: run_selection(defs, instance, args.select, force=args.force))


def _in_session(args, work) -> int:
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
    from metorigin.core.errors import MetoriginError
    from metorigin.core.lease import store_session

    problem = _selection_problem(args.select)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from metorigin.core.manifest import bind_study
    from metorigin.core.store import Store

    try:
        study = _checked_study(args)
        from metorigin.runtime.home import get_instance

        instance = get_instance(args.store)  # refuses an instance that serves another store
        with store_session(args.store, "metorigin run", wait=not args.no_wait, on_wait=_tell):
            for step in bind_study(Store(args.store), study, replace=args.replace_study):
                print(f"store {args.store} migrated: {step}", flush=True)
            _export_environment(
                args.cohort,
                args.store,
                args.profile,
                args.seed,
                args.study,
                args.nnunet_model,
                args.workers,
                args.densenet_epochs,
                args.split_repeats,
                **_placement(args),
            )
            print(f"study: {study.name} (hash {study.study_hash()}, seed {study.seed})", flush=True)
            from metorigin.definitions import build_definitions
            from metorigin.defs.common.resources import resources_from_env

            with _where_scans_run(args.store) as where:
                print(where, flush=True)
                defs = build_definitions(resources_from_env())
                with _run_log(args.store, args.verbose) as log_path:
                    try:
                        report = work(defs, instance)
                    except ValueError as exc:
                        print(f"error: {exc}", file=sys.stderr)
                        return 2
    except MetoriginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_summary(report, args.store))
    print(f"full log, with Dagster's tracebacks: {log_path}")
    return 0 if report.ok else 1


@contextlib.contextmanager
def _where_scans_run(store: Path):
    """The per-scan runs' executor as the study and the flags set it; for Dask, a scheduler whose
    workers have this run's environment and see the store (a local cluster or Slurm jobs are
    started here and stopped after). Yields a line saying where the scans run."""
    from metorigin.defs.common.resources import resources_from_env

    cluster = resources_from_env()["settings"].settings().cluster
    if cluster.executor != "dask":
        at_once = 1 if cluster.executor == "in_process" else cluster.scans_at_once
        yield f"scans: {cluster.executor} executor, up to {at_once} at a time"
        return
    from metorigin.runtime.cluster import open_cluster, prepare_workers

    with open_cluster(cluster) as address:
        os.environ["METORIGIN_DASK_ADDRESS"] = address  # the job's executor reads it (definitions.py)
        prepare_workers(address, str(store), cluster.resource_timeout_s, needed={"CPU", "GPU"})
        yield f"scans: dask executor on {address}, {cluster.scans_at_once} at a time"


def _tell(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _selection_problem(selection: str | None) -> str | None:
    """A --select that does not parse, refused before anything runs (a bad argument: exit 2)."""
    if not selection:
        return None
    import dagster as dg
    from dagster._core.definitions.asset_selection import DagsterInvalidAssetSelectionError

    try:
        dg.AssetSelection.from_string(selection)
    except DagsterInvalidAssetSelectionError as exc:
        reason = str(exc).strip().splitlines()[0]
        return (
            f"--select {selection!r} is not an asset selection ({reason}). Fix: e.g. --select 'key:scans', "
            "'group:imaging', 'not group:study', '*radiomics_features' (Dagster's selection syntax)"
        )
    return None


class _ConciseStderr:
    """Dagster's console log with the tracebacks cut off (they go, with everything else, to the log
    file): the terminal shows each record's first part, and the run summary says what to fix.

    Dagster writes a record's error after a blank line (`<header>\n\n<error and stack>`); the
    coloured console handler looks up `sys.stderr` at every write, so swapping it here is enough."""

    def __init__(self, terminal, log):
        self.terminal, self.log = terminal, log

    def write(self, text: str) -> int:
        self.log.write(text)
        head, blank, _ = text.partition("\n\n")
        self.terminal.write(_clip(head) + ("\n" if blank else ""))
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()

    def isatty(self) -> bool:
        return self.terminal.isatty()


@contextlib.contextmanager
def _run_log(store: Path, verbose: bool):
    """The run's log file (`<store>/logs/run-<time>.log`); the terminal gets it without tracebacks
    unless --verbose."""
    path = store / "logs" / f"run-{time.strftime('%Y%m%d-%H%M%S')}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as log:
        terminal = sys.stderr
        sys.stderr = _Tee(terminal, log) if verbose else _ConciseStderr(terminal, log)
        from metorigin.runtime.scan_runs import RUN_LOG

        os.environ[RUN_LOG] = str(path)  # where scans in worker processes log
        try:
            yield path
        finally:
            sys.stderr = terminal
            os.environ.pop(RUN_LOG, None)


TERMINAL_LINE = 300  # characters of a log line shown in the terminal (dbt's command line is ~15,000)


def _clip(text: str) -> str:
    return "\n".join(
        line if len(line) <= TERMINAL_LINE else f"{line[:TERMINAL_LINE]} ... (cut: the log file has all of it)"
        for line in text.split("\n")
    )


class _Tee(_ConciseStderr):
    """Everything to the terminal and the log file (--verbose)."""

    def write(self, text: str) -> int:
        self.log.write(text)
        return self.terminal.write(text)


def _load_study(study_file: Path | None, profile: str, seed: int | None):
    from metorigin.core.study import get_settings, load_study

    return load_study(study_file, seed) if study_file else get_settings(profile, seed)


def _study_problems(study, study_file: Path | None, cohort: Path | None, for_run: bool = True) -> list:
    """Everything that makes the study unusable here: what a run of it lacks, unknown grid parameters,
    and (given a cohort) a study that does not fit it."""
    from metorigin.core.study import run_problems
    from metorigin.defs.study.schedules import retrain_problems
    from metorigin.imaging.cohort import study_problems
    from metorigin.study.classifiers import grid_problems

    source = str(study_file or f"the built-in {study.profile} study")
    problems = (run_problems(study, source) if for_run else []) + grid_problems(study.models, source)
    problems += retrain_problems(study, source)
    return problems + (study_problems(cohort, study, source) if cohort and not problems else [])


def _checked_study(args):
    """The study, validated on its own and against the cohort: every refusal of the study or the
    cohort happens here, before anything is computed or stored (even the store folder)."""
    from metorigin.core.errors import StudyFileError
    from metorigin.core.study import with_run_choices

    study = with_run_choices(
        _load_study(args.study, args.profile, args.seed),
        args.nnunet_model,
        args.workers,
        args.densenet_epochs,
        args.split_repeats,
    )
    problems = _study_problems(study, args.study, args.cohort)
    if problems:
        raise StudyFileError(
            problems[0].file, problems[0].key, problems[0].problem, problems[0].fix, more=len(problems) - 1
        )
    return study


def cmd_study(args) -> int:
    if args.example is not None:
        return _write_example(args.example, args.out)
    import yaml

    from metorigin.core.errors import MetoriginError
    from metorigin.core.study import as_dict

    try:
        study = _load_study(args.study, args.profile, None)
        problems = _study_problems(study, args.study, args.cohort, for_run=False)
    except MetoriginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(yaml.safe_dump(as_dict(study), sort_keys=False), end="")
    print(f"# study hash: {study.study_hash()}")
    for step, digest in study.step_hashes().items():
        print(f"# {step} settings hash: {digest}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 2 if problems else 0


def _write_example(name: str, out: Path | None) -> int:
    """A shipped study file, to start a study of one's own from (its params_file is `default`, the
    package's radiomics parameters, so the copy works wherever it is written)."""
    from metorigin.core.package import example_studies

    examples = example_studies()
    if name not in examples:
        print(f"error: no example study {name!r}. Fix: use one of {', '.join(examples)}", file=sys.stderr)
        return 2
    text = examples[name].read_text(encoding="utf-8")
    if out is None:
        print(text, end="")
        return 0
    if out.exists():
        print(f"error: {out} exists; nothing was written. Fix: give another --out, or remove it first", file=sys.stderr)
        return 2
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}: check it with `metorigin study --study {out}`")
    return 0


def _summary(report, store_path: Path) -> str:
    from metorigin.core.store import Store

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
    store = Store(store_path)
    if store.duckdb_path.exists():
        with store.connect_read_only() as con:
            tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
            if "patients" in tables:
                query = "select coalesce(label, 'unlabelled'), count(*) from patients group by 1 order by 1"
                rows = con.execute(query).fetchall()
                lines.append("patients: " + ", ".join(f"{n} {site}" for site, n in rows))
            if "scans" in tables:
                n, included, invalid = con.execute(
                    "select count(*), count(*) filter (where included), count(*) filter (where not valid) from scans"
                ).fetchone()
                lines.append(
                    f"scans: {included} of {n} included" + (f", {invalid} invalid (see above)" if invalid else "")
                )
                for sid, reason in con.execute(
                    "select scan_id, exclusion_reason from scans where valid and not included order by scan_id"
                ).fetchall():
                    lines.append(f"  excluded {sid}: {reason}")
            if "model_metrics" in tables:
                lines.append(f"Tables 1-3: metorigin tables --store {store_path}")
        lines.append(f'feature store: {store.duckdb_path}  (query: metorigin sql --store {store_path} "...")')
    from metorigin.report.store_report import report_folder

    written = [report_folder(store, run) / "report.html" for run in report.run_ids]
    lines += [f"report: {page.resolve()}" for page in written if page.is_file()]
    lines.append(f"lake: {store.lake}")
    return "\n".join(lines)


def _aligned(frame) -> str:
    """Left-aligned columns (pandas right-aligns text), every cell in full."""
    text = frame.astype(str)
    widths = {c: max([len(str(c)), *text[c].str.len()]) for c in text}
    formatters = {c: (lambda w: lambda v: f"{v:<{w}}")(widths[c]) for c in text}
    return text.to_string(index=False, justify="left", formatters=formatters)


def _published_store(path: Path):
    """The store at `path` if it has a feature store to read; else None, with the fix printed."""
    from metorigin.core.store import Store

    store = Store(path)
    if store.duckdb_path.exists():
        return store
    print(f"error: no feature store at {store.duckdb_path}; run `metorigin run --store {path}` first", file=sys.stderr)
    return None


def cmd_tables(args) -> int:
    from metorigin.report.store_report import read_store_tables

    store = _published_store(args.store)
    if store is None:
        return 2
    from metorigin.report.paper_tables import READS, paper_tables

    tables, robustness_hash = read_store_tables(store, READS)
    paper = paper_tables(tables, robustness_hash)
    chosen = [paper[name] for name in (args.table or paper) if name in paper]
    absent = [name for name in (args.table or []) if name not in paper]
    for name in absent:
        print(
            f"error: no {name} in this store yet; `metorigin report --store {args.store}` says what fills it",
            file=sys.stderr,
        )
    comment = {"text": "", "csv": "# ", "latex": "% "}[args.format]
    for table in chosen:
        print(f"{comment}{table.title}")
        if args.format == "csv":
            print(table.frame.to_csv(index=False), end="")
        elif args.format == "latex":
            latex = table.frame.to_latex(index=False, escape=True)
            print(latex.replace("★", r"$\star$").replace("†", r"$\dagger$"), end="")
        else:
            print(_aligned(table.frame))
        print("".join(f"{comment}{note}\n" for note in table.notes))
    return 2 if absent else 0


REGISTRY_COLUMNS = (
    "model_id, arm, model, resampler, round(auc, 3) as auc, round(cv_auc, 3) as cv_auc, promoted, created_at"
)


def cmd_models_list(args) -> int:
    store = _published_store(args.store)
    if store is None:
        return 2
    with store.connect_read_only() as con:
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
        if "models" not in tables:
            print(
                f"error: no model registry in {args.store} yet: train first (`metorigin run --store {args.store} ...`)",
                file=sys.stderr,
            )
            return 2
        frame = con.execute(
            f"select {REGISTRY_COLUMNS} from models order by arm, cv_auc desc nulls last, auc desc"
        ).df()
        promotions = con.execute('select arm, model_id, who, "when", why from model_promotions').df()
    print(_aligned(frame.fillna("")))
    print(
        f"\n{int(frame['promoted'].sum())} promoted ({', '.join(sorted(frame.loc[frame['promoted'], 'arm']))})"
        if frame["promoted"].any()
        else f"\nnone promoted: metorigin models promote MODEL_ID --why TEXT --store {args.store}"
    )
    if not promotions.empty:
        print("\npromotions, oldest first:\n" + _aligned(promotions))
    return 0


def cmd_models_promote(args) -> int:
    """A `promote_models` run with the promotion as its config, in the store's instance and under
    its lease (the log appended, the registry tables published); the scans' predictions go stale and are re-scored
    by the next `metorigin run` or the sensor."""
    import getpass

    from metorigin.core.errors import MetoriginError
    from metorigin.core.lease import store_session

    store = args.store.absolute()
    if not (store / "study.yaml").is_file():
        print(f"error: {store} is not a trained store (no study.yaml)", file=sys.stderr)
        return 2
    try:
        with store_session(store, "metorigin models promote", wait=not args.no_wait, on_wait=_tell):
            defs, instance = _store_definitions(store)
            from metorigin.runtime.execution import RunReport
            from metorigin.runtime.runner import promote

            config = {"promote": args.model_ids, "why": args.why, "who": args.who or getpass.getuser()}
            with _run_log(store, args.verbose):
                report = promote(defs, instance, config, RunReport())
    except MetoriginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not report.ok:
        print(_summary(report, store), file=sys.stderr)
        return 1
    print(
        f"promoted {', '.join(args.model_ids)}: every scan's predictions are now stale; `metorigin run` (or the sensor "
        "under `metorigin ui`) scores them with it"
    )
    return 0


def _store_definitions(store: Path):
    """The Definitions of a store's own study and its instance (for steps outside `metorigin run`)."""
    from metorigin.definitions import build_definitions
    from metorigin.defs.common.resources import resources_from_env
    from metorigin.runtime.home import get_instance

    for name in ("METORIGIN_SEED", "METORIGIN_PROFILE", "METORIGIN_NNUNET_MODEL", "METORIGIN_DENSENET_EPOCHS"):
        os.environ.pop(name, None)  # the stored study, not what the shell says, is the store's study
    os.environ["METORIGIN_STORE"] = str(store)
    os.environ["METORIGIN_STUDY"] = str(store / "study.yaml")
    return build_definitions(resources_from_env()), get_instance(store)


def cmd_validate(args) -> int:
    """Store B (the cohort's) built under the models store's study (or its own, `--study`), up to the
    feature store, then `external_validation` with the models store; prints the external Table 3."""
    models = args.models.absolute()
    if not (models / "study.yaml").is_file() or not (models / "lake" / "models").is_dir():
        print(
            f"error: {models} holds no trained, registered models (train there with `metorigin run`)", file=sys.stderr
        )
        return 2
    if args.store.absolute() == models:
        print(
            "note: validating on the models store itself (its own cohort): a check that nothing is refitted", flush=True
        )
    study = args.study or models / "study.yaml"
    flags = [flag for flag, on in (("--no-wait", args.no_wait), ("--verbose", args.verbose)) if on]
    run_args = _parser().parse_args(
        ["run", "--cohort", str(args.cohort), "--store", str(args.store), "--study", str(study), *flags]
        + ["--workers", str(args.workers)]
    )

    def work(defs, instance):
        from metorigin.runtime.runner import validate_with

        return validate_with(defs, instance, models)

    code = _in_session(run_args, work)
    from metorigin.core.store import Store

    store = Store(args.store)
    if code == 0:
        with store.connect_read_only() as con:
            query = "select count(*) from information_schema.tables where table_name = 'external_metrics'"
            if con.execute(query).fetchone()[0]:
                frame = con.execute("select * from external_metrics order by arm, model, resampler").df()
                print(f"\nTable 3, external: the frozen models of {models} on {args.cohort}")
                print(_external_table(frame))
        pages = sorted(store.artifacts.glob("report/external-*/report.html"), key=lambda p: p.stat().st_mtime)
        if pages:
            print(f"external validation report: {pages[-1]}")
    return code


def _external_table(frame) -> str:
    from metorigin.report.paper_tables import external_table3

    table = external_table3(frame)
    return _aligned(table.frame) + "".join(f"\n{note}" for note in table.notes)


def cmd_sql(args) -> int:
    import duckdb

    from metorigin.core.store import Store

    store = Store(args.store)
    try:
        with store.connect_read_only() as con:
            frame = con.execute(args.query).df()
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except duckdb.Error as exc:
        # What DuckDB refuses on a connection opened with `READ_ONLY_CONFIG`: files, extensions and
        # secrets (PermissionException); ATTACH of a database file this process has open already
        # (ResourceInUseException); SET on the locked configuration; writes to the read-only file.
        reason = str(exc).strip().splitlines()[0]
        locked = ("the configuration has been locked", "read-only mode", "belongs to an attached database")
        refused = isinstance(exc, (duckdb.PermissionException, duckdb.ResourceInUseException))
        if not (refused or any(marker in reason for marker in locked)):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(
            f"error: refused: `metorigin sql` is read-only and has no file access (DuckDB: {reason}). "
            "Query the store's tables; to save a result, use --csv and redirect it to a file.",
            file=sys.stderr,
        )
        views = 0
        if "/lake/" in reason:  # a view over the lake, published by metorigin before it built tables only?
            with store.connect_read_only() as con:
                views = con.execute("select count(*) from duckdb_views() where not internal").fetchone()[0]
        if views:
            print(
                f"This store's feature store has {views} views over the lake, from an older metorigin: rebuild "
                f"it with `metorigin run --cohort COHORT --store {args.store} --select 'group:\"feature_store\"'`.",
                file=sys.stderr,
            )
        return 2
    if args.csv:
        frame.to_csv(sys.stdout, index=False)
    else:
        print(frame.to_string(index=False) if len(frame.columns) else "(no columns)")  # every cell in full
    return 0


def cmd_report(args) -> int:
    import shutil
    from datetime import datetime

    from metorigin.report.store_report import build_report

    store = _published_store(args.store)
    if store is None:
        return 2
    run = datetime.now().strftime("cli-%Y%m%d-%H%M%S") + ("-anonymous" if args.anonymous else "")
    report = build_report(store, run, args.cohort, anonymous=args.anonymous)
    for title in report.missing:
        print(f"incomplete: {title} (the report says what is missing and what fills it)")
    print(f"{len(report.figures)} figures, {len(report.tables)} tables (SVG, PNG, CSV): {report.folder}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(report.html, args.out)
    print(f"report: {(args.out or report.html).resolve()}")
    return 0


def cmd_ui(args) -> int:
    from metorigin.core.errors import MetoriginError
    from metorigin.runtime.home import use_store_instance

    try:
        args.study = _ui_study(args)
        home = use_store_instance(args.store)
    except MetoriginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _export_environment(args.cohort, args.store, args.profile, args.seed, args.study, **_placement(args))
    from metorigin.defs.common.resources import resources_from_env

    cluster = resources_from_env()["settings"].settings().cluster
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
    return _serve(command)


def _ui_study(args) -> Path | None:
    """The study the UI (and so the daemon) runs: the one the store holds (`<store>/study.yaml`, which
    keeps its nnU-Net folder and DenseNet epochs too) unless another is given, and then only that one:
    the daemon's runs never rewrite a store under another study."""
    from metorigin.core.errors import StudyFileError
    from metorigin.core.manifest import read_manifest
    from metorigin.core.store import Store

    stored = Path(args.store) / "study.yaml"
    if args.study is None and args.seed is None and stored.is_file():
        print(f"study: the store's own, {stored}", flush=True)
        return stored
    bound = read_manifest(Store(args.store)).get("study_hash") if stored.is_file() else None
    asked = _load_study(args.study, args.profile, args.seed).study_hash()
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
    import ctypes
    import signal

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))


def _serve(command: list[str], grace_s: float = 10.0) -> int:
    """Run `dagster dev` until it exits or this process is told to stop.

    `dagster dev` shuts its webserver, daemon and code server down on SIGINT (Ctrl-C) but ignores
    SIGTERM, which is what service managers, `kill` and `timeout` send: both become a SIGINT to it.
    What of its process group remains once it exited (its code server can outlive it, and runs the
    daemon launched) gets SIGTERM, then SIGKILL after `grace_s`; runs it left started are marked
    failed, so nothing waits on them (the store's sensors wait while a run is in flight)."""
    import signal
    import subprocess

    # Its own process group (one kill reaches all it starts), killed by the kernel should this
    # process die without running the handlers below (SIGKILL, OOM).
    server = subprocess.Popen(command, start_new_session=True, preexec_fn=_die_with_parent)

    def stop(signum, _frame):
        server.send_signal(signal.SIGINT)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_group(server.pid, grace_s)
        server.wait()
    _fail_runs_left_started()
    return 0 if server.returncode in (0, -signal.SIGINT, 130) else server.returncode


def _stop_group(group: int, grace_s: float) -> None:
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + grace_s
        try:
            os.killpg(group, sig)
            while time.monotonic() < deadline:
                os.killpg(group, 0)  # raises once the group is empty
                time.sleep(0.2)
        except ProcessLookupError:
            return


def _fail_runs_left_started() -> None:
    """Runs the stopped server had started (not `metorigin run`'s own, which run in its process)."""
    import dagster as dg

    from metorigin.runtime.runner import LAUNCHED_HERE

    instance = dg.DagsterInstance.get()
    started = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
    ((tag, value),) = LAUNCHED_HERE.items()
    for run in instance.get_runs(dg.RunsFilter(statuses=started)):
        if run.tags.get(tag) != value:
            instance.report_run_failed(run, message="metorigin ui stopped while the run was in progress")
            print(f"run {run.run_id} ({run.job_name}) was in progress: marked failed", flush=True)
    instance.dispose()


def cmd_forget(args) -> int:
    """Erase a patient (consent withdrawn): lake, artefacts, retired copies, the published tables
    rebuilt without them, their Dagster runs and partitions; models trained on them marked."""
    import getpass
    from datetime import datetime

    import dagster as dg

    from metorigin.core.errors import MetoriginError
    from metorigin.core.lease import store_session
    from metorigin.core.lifecycle import forget_patient
    from metorigin.core.store import Store
    from metorigin.runtime.erasure import forget_in_instance, require_instance_free
    from metorigin.runtime.home import use_store_instance

    store = Store(args.store)
    try:
        with store_session(store.root, "metorigin forget", wait=not args.no_wait, on_wait=_tell):
            home = use_store_instance(store.root)
            require_instance_free(home)
            report = forget_patient(store, args.patient, getpass.getuser(), args.why, datetime.now())
            print("\n".join(report.lines()), flush=True)
            print(f"run logs naming the patient deleted: {_forget_in_logs(store, args.patient, report.scans)}")
            runs = forget_in_instance(dg.DagsterInstance.get(), home, args.patient, report.scans)
            print(f"Dagster runs naming the patient or their scans deleted from {home}: {runs}")
            if store.duckdb_path.exists():
                print("rebuilding the feature store without the patient ...", flush=True)
                with _run_log(store.root, verbose=False):
                    rebuilt = _rebuild_feature_store(store)
                if not rebuilt.ok:
                    print(_summary(rebuilt, store.root), file=sys.stderr)
                    return 1
    except MetoriginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"done: every trace of the patient is erased from {store.root}; the erasure is logged in {report.log_path}")
    return 0


def _forget_in_logs(store, patient_id: str, scans: list[str]) -> int:
    """The CLI's run logs (`<store>/logs/`) that name the patient or one of their scans."""
    names = [n.encode() for n in (patient_id, *scans)]
    logs = [p for p in sorted((store.root / "logs").glob("*.log")) if any(n in p.read_bytes() for n in names)]
    for path in logs:
        path.unlink()
    return len(logs)


def _rebuild_feature_store(store):
    """dbt's tables built again from the erased lake, under the study the store holds."""
    from metorigin.definitions import build_definitions
    from metorigin.defs.common.resources import resources_from_env
    from metorigin.runtime.home import get_instance
    from metorigin.runtime.runner import run_selection

    for name in ("METORIGIN_SEED", "METORIGIN_PROFILE", "METORIGIN_NNUNET_MODEL", "METORIGIN_DENSENET_EPOCHS"):
        os.environ.pop(name, None)  # the stored study, not what the shell says, is the store's study
    os.environ["METORIGIN_STORE"] = str(store.root)
    os.environ["METORIGIN_STUDY"] = str(store.root / "study.yaml")
    defs = build_definitions(resources_from_env())
    return run_selection(defs, get_instance(store.root), "group:feature_store", progress=lambda _: None, force=True)


def cmd_ibsi_report(args) -> int:
    from metorigin.imaging.ibsi import compliance_table, report_markdown

    table = compliance_table()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report_markdown(table))
    print(
        f"{args.out}: "
        + ", ".join(f"{n} {v}" for v, n in table["verdict"].str.split(":").str[0].value_counts().items())
    )
    return 0


def cmd_demo(args) -> int:
    if not (args.cohort / "scans.csv").is_file():
        cmd_synth(_parser().parse_args(demo_synth_arguments(args.cohort)))
    run_args = _parser().parse_args(demo_run_arguments(args))
    run_args.study = None  # the built-in study of --profile, whatever METORIGIN_STUDY says
    return cmd_run(run_args)


def demo_synth_arguments(cohort: Path) -> list[str]:
    """The demo cohort is `metorigin synth` with these arguments, parsed like the user's."""
    return ["synth", "--out", str(cohort), "--seed", "7", "--scale", "1.0"]


def demo_run_arguments(args) -> list[str]:
    """`metorigin demo` is `metorigin run` with these arguments: parsed by the run parser, so every run
    option has its default here too."""
    flags = [flag for flag, on in (("--no-wait", args.no_wait), ("--verbose", args.verbose)) if on]
    return ["run", "--cohort", str(args.cohort), "--store", str(args.store), "--profile", args.profile, *flags]


if __name__ == "__main__":
    sys.exit(main())
