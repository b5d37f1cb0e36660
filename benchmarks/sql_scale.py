"""Feature-store SQL at scale: the wide pivot and the marts over 1,000,000 lesions x 107 features.

A synthetic lake of the shape the imaging assets write (patients, scans, scan_integrity, segmentations, lesions,
and the long radiomics table of 107,000,000 rows), each table with exactly the columns and types
declared in metorigin/core/schemas.py, is generated with DuckDB. Then the real dbt project (metorigin/sql/) builds the
marts from it with the variables the pipeline passes (`metorigin.defs.feature_store.dbt.dbt_vars` of the `quick`
profile: the lake schemas the staging models cast to, the feature columns of the pivot): the
staging tables, the `lesion_features` pivot, `tumor_burden`, `cohort_characteristics` and
`training_matrix` (`dbt run --select +path:models/marts`: the models, not dbt's data tests, and not
the study's results, whose lake tables the study's models write). The time and peak resident memory
of that dbt process (its own: see `_MEASURE`) are printed beside the targets.

    .venv/bin/python benchmarks/sql_scale.py [--lesions 1000000] [--workdir DIR]
    .venv/bin/python benchmarks/sql_scale.py --smoke   # the same steps on 200 lesions, in seconds

Last line: `seconds=<s> (target < 60) peak_gb=<g> (target < 4) time_ratio_to_target=<x>
memory_ratio_to_target=<y>`. With --smoke the numbers only say that it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a plain checkout too

from metorigin.core.package import DBT_PROJECT_DIR  # noqa: E402
from metorigin.core.schemas import LAKE_TABLES  # noqa: E402
from metorigin.core.study import get_settings  # noqa: E402
from metorigin.defs.feature_store.dbt import dbt_vars  # noqa: E402

TARGET_SECONDS, TARGET_GB = 60.0, 4.0
LESIONS_PER_SCAN = 20
MEASURED = "+path:models/marts"  # the marts and everything they read (staging and core tables, lake sources)
SETTINGS_HASH = "'bench'"


def lesion_id_sql(i: str, per_scan: int = LESIONS_PER_SCAN) -> str:
    return f"'S' || ({i} // {per_scan}) || '-L' || lpad(({i} % {per_scan} + 1)::varchar, 3, '0')"


def copy_table(
    con: duckdb.DuckDBPyConnection,
    lake: Path,
    table: str,
    columns: dict[str, str],
    source: str,
    options: str = "",
    scans: list[str] | None = None,
) -> None:
    """One lake table as the pipeline writes it: exactly the declared columns, in order, as the declared
    types (the SQL counterpart of `metorigin.core.schemas.conform`); with `scans`, one file per scan
    (`<table>/<scan>.parquet`, empty for a scan without rows), as the per-scan assets write it."""
    schema = LAKE_TABLES[table]
    missing = [c for c in schema.names if c not in columns]
    extra = [c for c in columns if c not in schema.names]
    if missing or extra:
        raise ValueError(
            f"{table}: the benchmark's lake does not match metorigin/core/schemas.py "
            f"(missing {missing}, unexpected {extra})"
        )
    select = ", ".join(f'cast({columns[c.name]} as {c.type}) as "{c.name}"' for c in schema.columns)
    (lake / table).mkdir(parents=True, exist_ok=True)
    if scans is None:
        con.execute(f"copy (select {select} from {source}) to '{lake}/{table}/all.parquet' (format parquet{options})")
        return
    rows = con.sql(f"select {select} from {source} order by scan_id").to_arrow_table()
    counts = {c["values"].as_py(): c["counts"].as_py() for c in pc.value_counts(rows["scan_id"])}
    start = 0
    for scan in sorted(scans):  # the rows' order: scan ids as strings
        n = counts.get(scan, 0)
        pq.write_table(rows.slice(start, n), lake / table / f"{scan}.parquet")
        start += n


def write_lake(
    lake: Path,
    n_lesions: int,
    features: list[str],
    classes: list[str],
    lesions_per_scan: int = LESIONS_PER_SCAN,
    per_scan_files: bool = False,
) -> list[str]:
    """The lake tables the measured models read; `lesions_per_scan` lesions per scan, one scan per
    patient, 3 in 5 patients of the first class; the per-scan tables in one file each, or one file per
    scan (`per_scan_files`). Returns the tables written."""
    per_scan = lesions_per_scan
    n_scans = max(1, -(-n_lesions // per_scan))
    scan_files = [f"S{i}" for i in range(n_scans)] if per_scan_files else None
    first, second = classes
    con = duckdb.connect()
    con.execute("set threads = 2")
    scans = f"range({n_scans}) t(i)"
    copy_table(
        con,
        lake,
        "patients",
        {
            "patient_id": "'P' || i",
            "label": f"case when i % 5 < 3 then '{first}' else '{second}' end",
            "age": "40 + i % 40",
            "sex": "case when i % 2 = 0 then 'F' else 'M' end",
            "t_stage": "'T' || (1 + i % 4)",
            "n_stage": "'N' || (i % 3)",
            "m_stage": "'M1'",
            "source_line": "i + 2",
            "settings_hash": SETTINGS_HASH,
        },
        scans,
    )
    copy_table(
        con,
        lake,
        "scans",
        {
            "scan_id": "'S' || i",
            "patient_id": "'P' || i",
            "image": "'images/S' || i || '.nii.gz'",
            "mask": "'masks/S' || i || '.nii.gz'",
            "liver_labels": "'1'",
            "lesion_labels": "'2'",
            "ignore_labels": "null",
            "kernel": "'B30s'",
            "kernel_source": "'scans.csv'",
            "slice_thickness_mm": "1.5",
            "slice_thickness_source": "'scans.csv'",
            "contrast_phase": "'portal_venous'",
            "contrast_phase_source": "'scans.csv'",
            "image_format": "'nifti'",
            "size_x": "512",
            "size_y": "512",
            "size_z": "200",
            "spacing_x": "0.75",
            "spacing_y": "0.75",
            "spacing_z": "1.5",
            "origin_x": "-190.0",
            "origin_y": "-210.0",
            "origin_z": "-400.0",
            "direction": "'1;0;0;0;1;0;0;0;1'",
            "slice_tilt_deg": "0.0",
            "pixel_type": "'16-bit signed integer'",
            "valid": "true",
            "error_kind": "null",
            "included": "true",
            "exclusion_reason": "null",
            "source_line": "i + 2",
            "settings_hash": SETTINGS_HASH,
        },
        scans,
    )
    copy_table(
        con,
        lake,
        "scan_integrity",
        {
            "scan_id": "'S' || i",
            "patient_id": "'P' || i",
            "status": "'passed'",
            "problems": "null",
            "warnings": "null",
            "image_sha256": "sha256('S' || i)",
            "mask_sha256": "sha256('M' || i)",
            "declared_labels": "'1 | 2 | '",
            "labels_present": "'1;2'",
            "min_hu": "-1024.0",
            "max_hu": "1500.0",
            "n_nonfinite": "0",
            "liver_median_hu": "95.0",
            "checks_version": "1",
            "checked_at": "'2026-11-27T00:00:00+0000'",
            "settings_hash": SETTINGS_HASH,
        },
        scans,
        scans=scan_files,
    )
    copy_table(
        con,
        lake,
        "segmentations",
        {
            "scan_id": "'S' || i",
            "patient_id": "'P' || i",
            "method": "'provided'",
            "model_id": "null",
            "resampled": "false",
            "label_map": "'artifacts/segmentations/S' || i",
            "liver_volume_ml": "1500.0 + i % 300",
            "lesion_volume_ml": "100.0",
            "liver_parenchyma_mean_hu": "90.0",
            "voxel_volume_ml": "0.00084",
            "settings_hash": SETTINGS_HASH,
        },
        scans,
        scans=scan_files,
    )
    copy_table(
        con,
        lake,
        "lesions",
        {
            "lesion_id": lesion_id_sql("i", per_scan),
            "scan_id": f"'S' || (i // {per_scan})",
            "patient_id": f"'P' || (i // {per_scan})",
            "lesion_number": f"i % {per_scan} + 1",
            "voxel_count": "1000 + i % 5000",
            "volume_ml": "0.5 + (i % 97) / 10",
            "max_diameter_mm": "5.0 + i % 40",
            "centroid_x_mm": "0.0",
            "centroid_y_mm": "0.0",
            "centroid_z_mm": "-300.0",
            "bbox_x0": "10",
            "bbox_x1": "30",
            "bbox_y0": "10",
            "bbox_y1": "30",
            "bbox_z0": "5",
            "bbox_z1": "15",
            "mean_hu": "45.0",
            "included": "true",
            "exclusion_reason": "null",
            "settings_hash": SETTINGS_HASH,
        },
        f"range({n_lesions}) t(i)",
        scans=scan_files,
    )
    con.execute(
        "create temp table names as select * from (values "
        + ", ".join(f"({k}, '{name}')" for k, name in enumerate(features))
        + ") t(k, feature_name)"
    )
    copy_table(
        con,
        lake,
        "radiomics_features",
        {
            "lesion_id": lesion_id_sql("i", per_scan),
            "scan_id": f"'S' || (i // {per_scan})",
            "patient_id": f"'P' || (i // {per_scan})",
            "feature_name": "n.feature_name",
            "feature_class": "split_part(n.feature_name, '_', 2)",
            "feature_value": "hash(i, n.k) % 1000 / 10.0",
            "undefined_reason": "null",
            "pyradiomics_version": "'v3.1.4'",
            "settings_hash": SETTINGS_HASH,
        },
        f"range({n_lesions}) t(i) cross join names n",
        ", row_group_size 1000000",
        scans=scan_files,
    )
    return ["patients", "scans", "scan_integrity", "segmentations", "lesions", "radiomics_features"]


# dbt runs as the grandchild of this process, under a small Python that times it and reads its peak
# memory: a process started straight from this one would report this process's peak as its own
# (Linux carries the peak resident memory of the exec'ing process over into the new program, and this
# one holds the Dagster wiring and wrote the lake).
_MEASURE = """import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[2:], stdout=sys.stdout, stderr=sys.stderr)
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as out:
    json.dump({"seconds": seconds, "maxrss_kb": usage.ru_maxrss, "code": child.returncode}, out)
"""


def run_dbt(args: list[str], env: dict, work: Path) -> tuple[int, float, float]:
    """dbt in its own process: exit code, seconds and that process's peak resident memory in GB."""
    measured = work / "dbt_measure.json"
    measured.unlink(missing_ok=True)  # a --workdir used before holds the last run's
    with (work / "dbt.log").open("w") as log:
        wrapper = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(measured), *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    if not measured.exists():  # dbt did not start: the log says why
        return wrapper.returncode or 1, 0.0, 0.0
    result = json.loads(measured.read_text())
    return result["code"], result["seconds"], result["maxrss_kb"] / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lesions", type=int, default=None, help="default 1,000,000; 200 with --smoke")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the synthetic store goes (default: a temp dir, removed afterwards)",
    )
    parser.add_argument("--smoke", action="store_true", help="the same build on a tiny lake")
    args = parser.parse_args()
    n_lesions = args.lesions or (200 if args.smoke else 1_000_000)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="metorigin-sql-scale-"))
    store = work / "store"
    variables = dbt_vars(get_settings("quick"))
    features = variables["feature_names"]
    start = time.perf_counter()
    tables = write_lake(store / "lake", n_lesions, features, variables["label_classes"])
    print(
        f"lake ({', '.join(tables)}): {n_lesions:,} lesions x {len(features)} features = "
        f"{n_lesions * len(features):,} long rows written in {time.perf_counter() - start:.1f} s"
    )
    (store / ".build").mkdir(parents=True, exist_ok=True)
    database = store / ".build" / "feature_store.duckdb"
    env = dict(os.environ, METORIGIN_STORE=str(store), METORIGIN_DUCKDB=str(database))
    dbt = str(Path(sys.executable).with_name("dbt"))
    code, seconds, peak_gb = run_dbt(
        [
            dbt,
            "run",
            "--select",
            MEASURED,
            "--vars",
            json.dumps(variables),
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(work / "target"),
            "--log-path",
            str(work / "logs"),
        ],
        env,
        work,
    )
    if code:
        sys.exit(f"dbt run failed (exit code {code}):\n{(work / 'dbt.log').read_text()[-3000:]}")
    con = duckdb.connect(str(database), read_only=True)
    rows, cols = (
        con.execute("select count(*) from lesion_features").fetchone()[0],
        len(con.execute("select * from lesion_features limit 0").description),
    )
    training_rows = con.execute("select count(*) from training_matrix").fetchone()[0]
    incomplete = con.execute(f'select count(*) from lesion_features where "{features[0]}" is null').fetchone()[0]
    con.close()
    print(
        f"dbt run (staging tables, lesion_features pivot, tumor_burden, cohort_characteristics, training_matrix): "
        f"{seconds:.1f} s, peak memory {peak_gb:.2f} GB; lesion_features {rows:,} rows x {cols} columns"
    )
    if (rows, cols, training_rows, incomplete) != (n_lesions, 3 + len(features), n_lesions, 0):
        sys.exit(
            f"wrong feature store: lesion_features {rows} x {cols}, {incomplete} lesions without features, "
            f"training_matrix {training_rows} rows (expected {n_lesions} x {3 + len(features)}, "
            f"0 and {n_lesions})"
        )
    print(
        f"seconds={seconds:.1f} (target < {TARGET_SECONDS:g}) peak_gb={peak_gb:.2f} (target < {TARGET_GB:g}) "
        f"time_ratio_to_target={seconds / TARGET_SECONDS:.2f} memory_ratio_to_target={peak_gb / TARGET_GB:.2f}"
    )
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
