"""Commands that run the pipeline: `synth` (a synthetic cohort), `run`, `demo` and `validate`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from metorigin.cli.main import parser
from metorigin.cli.session import aligned, in_session
from metorigin.core.store import Store
from metorigin.imaging.synth import SynthConfig, append_patients, generate_cohort
from metorigin.report.paper_tables import external_table3
from metorigin.report.store_summary import external_metrics
from metorigin.runtime.runner import run_selection, validate_with


def cmd_synth(args) -> int:
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
    return in_session(args, lambda defs, instance: run_selection(defs, instance, args.select, force=args.force))


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
    run_args = parser().parse_args(
        ["run", "--cohort", str(args.cohort), "--store", str(args.store), "--study", str(study), *flags]
        + ["--workers", str(args.workers)]
    )

    code = in_session(run_args, lambda defs, instance: validate_with(defs, instance, models))
    store = Store(args.store)
    if code == 0:
        frame = external_metrics(store)
        if frame is not None:
            print(f"\nTable 3, external: the frozen models of {models} on {args.cohort}")
            print(_external_table(frame))
        pages = sorted(store.artifacts.glob("report/external-*/report.html"), key=lambda p: p.stat().st_mtime)
        if pages:
            print(f"external validation report: {pages[-1]}")
    return code


def _external_table(frame) -> str:
    table = external_table3(frame)
    return aligned(table.frame) + "".join(f"\n{note}" for note in table.notes)


def cmd_demo(args) -> int:
    if not (args.cohort / "scans.csv").is_file():
        cmd_synth(parser().parse_args(demo_synth_arguments(args.cohort)))
    run_args = parser().parse_args(demo_run_arguments(args))
    return cmd_run(run_args)


def demo_synth_arguments(cohort: Path) -> list[str]:
    """The demo cohort is `metorigin synth` with these arguments, parsed like the user's."""
    return ["synth", "--out", str(cohort), "--seed", "7", "--scale", "1.0"]


def demo_run_arguments(args) -> list[str]:
    """`metorigin demo` is `metorigin run` with these arguments: parsed by the run parser, so every run
    option has its default here too."""
    flags = [flag for flag, on in (("--no-wait", args.no_wait), ("--verbose", args.verbose)) if on]
    return ["run", "--cohort", str(args.cohort), "--store", str(args.store), "--profile", args.profile, *flags]
