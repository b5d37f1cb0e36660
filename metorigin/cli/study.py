"""`metorigin study`: check a study file and show its effective settings and hashes, or write out
one of the shipped examples to edit."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from metorigin.cli.session import load_study_file, study_file_problems
from metorigin.core.errors import MetoriginError
from metorigin.core.package import example_studies
from metorigin.core.study import as_dict


def cmd_study(args) -> int:
    if args.example is not None:
        return _write_example(args.example, args.out)

    try:
        study = load_study_file(args.study, args.profile, None)
        problems = study_file_problems(study, args.study, args.cohort, for_run=False)
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
