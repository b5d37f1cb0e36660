"""Feature-store SQL at scale: the wide pivot and the marts over 1,000,000 lesions x 107 features.

A synthetic lake of the shape the imaging assets write (patients, scans, segmentations, lesions,
and the long radiomics table of 107,000,000 rows) is generated with DuckDB, then the real dbt
project (sql/) builds the feature store from it with `dbt run`, exactly as the pipeline does. The
time and peak memory of that dbt process are printed beside the targets.

    .venv/bin/python benchmarks/sql_scale.py [--lesions 1000000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from assets.radiomics import expected_features, make_extractor

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS, TARGET_GB = 60.0, 4.0


def write_lake(lake: Path, n_lesions: int, features: list[str]) -> None:
    """Lake files with the pipeline's columns; 20 lesions per scan, one scan per patient."""
    n_scans = max(1, n_lesions // 20)
    for name in ("patients", "scans", "segmentations", "lesions", "radiomics_features", "lesion_slices"):
        (lake / name).mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("set threads = 2")
    con.execute(f"""copy (select 'P' || i as patient_id, case when i % 5 < 3 then 'colorectal' else 'pancreatic' end
                      as primary_site, 40 + i % 40 as age, case when i % 2 = 0 then 'F' else 'M' end as sex,
                      'T' || (1 + i % 4) as t_stage, 'N' || (i % 3) as n_stage, 'M1' as m_stage
                    from range({n_scans}) t(i)) to '{lake}/patients/all.parquet' (format parquet)""")
    con.execute(f"""copy (select 'S' || i as scan_id, 'P' || i as patient_id, 'images/S' || i || '.nii.gz' as image,
                      'masks/S' || i || '.nii.gz' as mask, '1' as liver_labels, '2' as lesion_labels,
                      'B30s' as kernel, 'scans.csv' as kernel_source, 1.5 as slice_thickness_mm,
                      'scans.csv' as slice_thickness_source, 'portal_venous' as contrast_phase,
                      'scans.csv' as contrast_phase_source, 'nifti' as image_format, 512 as size_x, 512 as size_y,
                      200 as size_z, 0.75 as spacing_x, 0.75 as spacing_y, 1.5 as spacing_z, -190.0 as origin_x,
                      -210.0 as origin_y, -400.0 as origin_z, '1;0;0;0;1;0;0;0;1' as direction,
                      0.0 as slice_tilt_deg, true as valid, null::varchar as error_kind, true as included,
                      null::varchar as exclusion_reason, i + 2 as source_line
                    from range({n_scans}) t(i)) to '{lake}/scans/all.parquet' (format parquet)""")
    con.execute(f"""copy (select 'S' || i as scan_id, 'P' || i as patient_id, 'provided' as method,
                      null::varchar as model_id, false as resampled, 'artifacts/segmentations/S' || i as label_map,
                      1500.0 + i % 300 as liver_volume_ml, 100.0 as lesion_volume_ml, 90.0 as liver_parenchyma_mean_hu,
                      0.00084 as voxel_volume_ml
                    from range({n_scans}) t(i)) to '{lake}/segmentations/all.parquet' (format parquet)""")
    con.execute(f"""copy (select 'S' || (i // 20) || '-L' || lpad((i % 20 + 1)::varchar, 3, '0') as lesion_id,
                      'S' || (i // 20) as scan_id, 'P' || (i // 20) as patient_id, i % 20 + 1 as lesion_number,
                      1000 + i % 5000 as voxel_count, 0.5 + (i % 97) / 10 as volume_ml, 5.0 + i % 40 as max_diameter_mm,
                      0.0 as centroid_x_mm, 0.0 as centroid_y_mm, -300.0 as centroid_z_mm, 10 as bbox_x0, 30 as bbox_x1,
                      10 as bbox_y0, 30 as bbox_y1, 5 as bbox_z0, 15 as bbox_z1, 45.0 as mean_hu, true as included,
                      null::varchar as exclusion_reason
                    from range({n_lesions}) t(i)) to '{lake}/lesions/all.parquet' (format parquet)""")
    con.execute("create temp table names as select * from (values " +
                ", ".join(f"({k}, '{name}')" for k, name in enumerate(features)) + ") t(k, feature_name)")
    con.execute(f"""copy (select 'S' || (i // 20) || '-L' || lpad((i % 20 + 1)::varchar, 3, '0') as lesion_id,
                      'S' || (i // 20) as scan_id, 'P' || (i // 20) as patient_id, n.feature_name,
                      split_part(n.feature_name, '_', 2) as feature_class, hash(i, n.k) % 1000 / 10.0 as feature_value,
                      null::varchar as undefined_reason, 'v3.1.4' as pyradiomics_version, 'bench' as settings_hash
                    from range({n_lesions}) t(i) cross join names n)
                    to '{lake}/radiomics_features/all.parquet' (format parquet, row_group_size 1000000)""")
    con.execute(f"""copy (select 'S0-L001' as lesion_id, 'S0' as scan_id, 'P0' as patient_id, 0 as slice_index,
                      0 as array_row, 10 as lesion_area_px, 5.6 as lesion_area_mm2, 20.0 as crop_side_mm,
                      'artifacts/lesion_slices/S0.npz' as slices_file) to '{lake}/lesion_slices/all.parquet' (format parquet)""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lesions", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=None, help="where the synthetic store goes (default: a temp dir)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="metorigin-sql-scale-"))
    store = work / "store"
    features = expected_features(make_extractor())
    start = time.perf_counter()
    write_lake(store / "lake", args.lesions, features)
    print(f"lake: {args.lesions:,} lesions x {len(features)} features = {args.lesions * len(features):,} long rows "
          f"written in {time.perf_counter() - start:.0f} s")
    (store / ".build").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, METORIGIN_STORE=str(store), METORIGIN_DUCKDB=str(store / ".build" / "feature_store.duckdb"))
    dbt = str(Path(sys.executable).with_name("dbt"))
    start = time.perf_counter()
    result = subprocess.run([dbt, "run", "--project-dir", str(REPO / "sql"), "--profiles-dir", str(REPO / "sql"),
                             "--target-path", str(work / "target"), "--log-path", str(work / "logs")],
                            env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2
    if result.returncode:
        sys.exit(f"dbt run failed:\n{result.stdout[-3000:]}")
    con = duckdb.connect(str(store / ".build" / "feature_store.duckdb"), read_only=True)
    rows, cols = con.execute("select count(*) from lesion_features").fetchone()[0], len(
        con.execute("select * from lesion_features limit 0").description)
    print(f"dbt run (staging views, lesion_features pivot, tumor_burden, cohort_characteristics, training_matrix): "
          f"{seconds:.1f} s, peak memory {peak_gb:.2f} GB; lesion_features {rows:,} rows x {cols} columns")
    print(f"seconds={seconds:.1f} (target < {TARGET_SECONDS:g}) peak_gb={peak_gb:.2f} (target < {TARGET_GB:g}) "
          f"time_ratio_to_target={seconds / TARGET_SECONDS:.2f} memory_ratio_to_target={peak_gb / TARGET_GB:.2f}")
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
