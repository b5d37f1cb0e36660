"""The study report from a store: what the `study_report` asset and `metorigin report` share.

The pure report (study_report.py) gets its tables from the published feature store, its example
lesions from the slice artefacts (assets/slices.py), and its provenance from here: the cohort's
CSVs, the store's study, the code and library versions.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

from metorigin.core.lifecycle import REPORTS
from metorigin.core.manifest import read_manifest
from metorigin.core.package import code_version
from metorigin.core.store import Store
from metorigin.imaging.qc import QC_PICTURES
from metorigin.imaging.slices import load_slices
from metorigin.report.report_data import QUERIES, ReportTables, anonymised, read_tables
from metorigin.report.study_report import EXAMPLES_PER_CLASS, Images, StudyReport, write_external_report, write_report
from metorigin.study.registry import library_versions

LIBRARIES = (
    "metorigin",
    "dagster",
    "dbt-core",
    "duckdb",
    "pyradiomics-bhklab",
    "SimpleITK",
    "nnunetv2",
    "scikit-learn",
    "imbalanced-learn",
    "xgboost",
    "torch",
    "monai",
    "matplotlib",
)


def report_folder(store: Store, run: str) -> Path:
    return store.artifacts / REPORTS / run


def cohort_hash(cohort: Path) -> str:
    """sha256 of the cohort's CSVs (qc.csv too, where there is one) as they are now."""
    digest = hashlib.sha256()
    for name in ("patients.csv", "scans.csv", "qc.csv"):
        if (cohort / name).is_file():
            digest.update(name.encode() + (cohort / name).read_bytes())
    return digest.hexdigest()[:16]


def _provenance(store: Store, cohort: Path | None, run: str, tables: ReportTables) -> list[tuple[str, str]]:
    manifest = read_manifest(store)
    if cohort is None:
        where = "not given (metorigin report --cohort DIR)"
    elif (cohort / "scans.csv").exists():
        where = f"{cohort} (sha256 of its CSVs now: {cohort_hash(cohort)})"
    else:
        where = f"{cohort} (no scans.csv there now)"
    versions = library_versions(LIBRARIES)
    return [
        (
            "study",
            f"{manifest.get('study_name', 'unknown')} (study hash {manifest.get('study_hash', 'unknown')}; "
            "every setting: see Study settings at the end)",
        ),
        ("cohort", where),
        ("store", str(store.root)),
        ("run", run),
        ("seed", str(tables.setting("seed", "unknown"))),
        ("code", code_version()),
        ("libraries", ", ".join(f"{name} {version}" for name, version in versions.items() if name != "metorigin")),
        ("written", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
    ]


def _images(store: Store, tables: ReportTables) -> Images:
    """The largest slice of the largest training lesions (EXAMPLES_PER_CLASS per class, one per
    patient, among those whose slice file is in the store), and each test scan's QC picture
    (artifacts/qc/<scan>.png, drawn by the lesions asset)."""
    examples, rows = {}, tables.get("example_slices")
    for label in tables.classes if rows is not None else ():
        on_disk = rows["slices_file"].map(lambda f: (store.root / f).is_file())
        chosen = rows[(rows["label"] == label) & on_disk].drop_duplicates("patient_id").head(EXAMPLES_PER_CLASS)
        examples[label] = [
            (
                f"{r['lesion_id']}, {r['lesion_area_mm2']:.0f} mm²",
                load_slices(store.root / r["slices_file"])[r["array_row"]],
            )
            for _, r in chosen.iterrows()
        ]
    qc = []
    scans = tables.get("test_scans")
    for _, scan in scans.iterrows() if scans is not None else ():
        picture = store.artifact_path(QC_PICTURES, f"{scan['scan_id']}.png")
        caption = f"{scan['scan_id']} ({scan['patient_id']}, {scan['label']})"
        qc.append((caption, picture.read_bytes() if picture.is_file() else None))
    return Images({label: images for label, images in examples.items() if images}, qc)


EXTERNAL_READS = ("settings", "external_metrics", "external_predictions")


def build_external_report(store: Store, run: str) -> StudyReport:
    """The external validation's page (its Table 3, Fig. 4, ROC and calibration curves) from the
    store's published `external_metrics` and `external_predictions`, into artifacts/report/<run>/."""
    tables, _ = read_store_tables(store, EXTERNAL_READS)
    if not tables.has("external_metrics", "external_predictions"):
        raise FileNotFoundError("; ".join(tables.missing.values()))
    provenance = [(k, v) for k, v in _provenance(store, None, run, tables) if k != "cohort"]
    source = tables.get("external_metrics")["models_store"].iloc[0]
    provenance.insert(1, ("models", f"the frozen models of {source}"))
    seed = int(tables.setting("seed", 0))
    return write_external_report(tables, report_folder(store, run), provenance, seed, "External validation")


def read_store_tables(store: Store, names: tuple[str, ...] = tuple(QUERIES)) -> tuple[ReportTables, str | None]:
    """The tables the report reads (or only `names`), and the robustness settings' hash of the
    store's study (to mark robustness rows published by an earlier run with other settings)."""
    with store.connect_read_only() as con:
        tables = read_tables(con, names)
    return tables, read_manifest(store).get("step_hashes", {}).get("robustness")


def build_report(store: Store, run: str, cohort: Path | None = None, anonymous: bool = False) -> StudyReport:
    """Write the report of the store's published results into artifacts/report/<run>/."""
    tables, robustness_hash = read_store_tables(store)
    if anonymous:
        tables = anonymised(tables)
    images = None if anonymous else _images(store, tables)
    provenance = _provenance(store, None if anonymous else cohort, run, tables)
    if anonymous:
        provenance = [(k, v) for k, v in provenance if k not in ("store", "cohort")]
    name = read_manifest(store).get("study_name")
    seed = int(tables.setting("seed", 0))
    return write_report(
        tables,
        report_folder(store, run),
        provenance,
        store.root,
        images,
        seed,
        robustness_hash,
        title=f"Study report: {name}" if name else "Study report",
    )
