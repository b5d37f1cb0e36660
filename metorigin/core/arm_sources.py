"""The dbt side of the model arms, written from the modules of metorigin/arms/.

Every module there is one arm (metorigin/study/arm.py), and every arm writes the lake tables
`<arm>_metrics` and `<arm>_predictions`. dbt must know them as sources (Table 3's `model_metrics`
and `lesion_predictions` union them, and dagster-dbt draws the lineage from the sources), and dbt
knows only files. So the files are generated: `models/results/arms.yml` (the sources) and
`macros/arm_tables.sql` (the lists `arm_union` iterates over), both ignored by git.

Standard library only, and no import of metorigin: setup.py loads this file by its path to write
them before `dbt parse`, in a build environment without the platform's dependencies; the code
writes them in a checkout before it re-parses a stale manifest (defs/feature_store/dbt.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SOURCES_FILE = Path("models") / "results" / "arms.yml"
MACRO_FILE = Path("macros") / "arm_tables.sql"
KINDS = ("metrics", "predictions")
GENERATED = "generated from the modules of metorigin/arms/ (metorigin/core/arm_sources.py): do not edit"


def arm_module_names(arms_dir: Path) -> list[str]:
    """The arms: one per module of the package (its `__init__` is the registry, not an arm)."""
    return sorted(p.stem for p in arms_dir.glob("*.py") if not p.name.startswith("_"))


def arm_files(arms: list[str]) -> dict[Path, str]:
    """The generated files' text, for these arms (in the order of their names, as the registry's)."""
    tables = [f"{arm}_{kind}" for arm in arms for kind in KINDS]
    sources = [
        f"# {GENERATED}",
        "version: 2",
        "",
        "sources:",
        "  - name: arms",
        '    description: "The lake tables of the model arms: each arm\'s Table 3 rows and per-lesion probabilities."',
        "    config:",
        "      external_location: \"read_parquet('{{ env_var('METORIGIN_STORE', 'demo/store') }}"
        "/lake/{name}/*.parquet', union_by_name = true)\"",
        "    tables:",
    ]
    for table in tables:
        sources += [f"      - name: {table}", f'        meta: {{dagster: {{asset_key: ["{table}"]}}}}']
    lists = {kind: [f"{arm}_{kind}" for arm in arms] for kind in KINDS}
    macro = [
        f"{{# {GENERATED} #}}",
        "{% macro arm_tables() %}",
        f"  {{{{ return({json.dumps(lists)}) }}}}",
        "{% endmacro %}",
    ]
    return {SOURCES_FILE: "\n".join(sources) + "\n", MACRO_FILE: "\n".join(macro) + "\n"}


def write_arm_files(project_dir: Path, arms: list[str]) -> bool:
    """Writes the files where their text changed (an unchanged file keeps its time, so the manifest
    stays fresh); True when one did."""
    changed = False
    for relative, text in arm_files(arms).items():
        path = project_dir / relative
        if not path.is_file() or path.read_text() != text:
            # Whole or not at all: another process (a test worker, a run) may be parsing the project.
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
            changed = True
    return changed
