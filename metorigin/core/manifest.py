"""The store's manifest (`store.json`): which layout version the store has and which study it holds.

A store outlives the code that wrote it, so it says which version of the layout it is in; newer
code migrates an older store in place before writing to it, one recorded step per version.
And a store holds one study: a run under another study file is refused with both hashes, because
a store mixing two protocols would make every number in it ambiguous. The effective settings are
written beside the manifest (`study.yaml`); `settings_table` gives them as rows for the
`study_settings` table that SQL users query like any other.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd
import yaml

from metorigin.core.errors import StoreStudyMismatch, StoreVersionError
from metorigin.core.files import atomic_path
from metorigin.core.schemas import LAKE_TABLES, SCAN_INTEGRITY, SCANS, STUDY_SETTINGS, conform
from metorigin.core.store import Store
from metorigin.core.study import DEFAULT_RADIOMICS_PARAMS, PACKAGED_PARAMS, STEP_SETTINGS, StudySettings, as_dict

SCHEMA_VERSION = 3
MANIFEST = "store.json"


def manifest_path(store: Store) -> Path:
    return store.root / MANIFEST


def read_manifest(store: Store) -> dict:
    path = manifest_path(store)
    return json.loads(path.read_text()) if path.is_file() else {}


def schema_version(store: Store) -> int:
    """0: a new store; 1: written before stores had a manifest; else what the manifest says."""
    manifest = read_manifest(store)
    if manifest:
        return int(manifest["schema_version"])
    return 1 if store.lake.is_dir() and any(store.lake.iterdir()) else 0


def _write_manifest(store: Store, manifest: dict) -> None:
    with atomic_path(manifest_path(store)) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _migrate_1_to_2(store: Store) -> str:
    """Version 2 declares every lake table's columns once (core/schemas.py): the class column of
    `patients` is `label` (it was `primary_site`), and every table carries `settings_hash`
    (unknown, hence empty, for rows written before hashes existed)."""
    for name, schema in LAKE_TABLES.items():
        for partition in store.lake_partitions(name):
            frame = pd.read_parquet(store.lake_file(name, partition)).rename(columns={"primary_site": "label"})
            # v1's radiomics rows hashed the parameter file alone, no step hash of today's: unknown, then.
            if "settings_hash" in schema.names:
                frame["settings_hash"] = None
            for column in schema.names:
                if column not in frame.columns:
                    frame[column] = None
            store.write_lake(name, conform(frame[schema.names], schema), partition)
    return "1 -> 2: patients.primary_site renamed to label; settings_hash added to every lake table"


def _migrate_2_to_3(store: Store) -> str:
    """Version 3 decodes and checks every scan's files before processing it (`scan_integrity`)
    and lets scans.csv name mask labels to ignore. `scans` gains `ignore_labels` (empty: none),
    and each scan processed before the checks existed gets a `scan_integrity` row with the status
    `unchecked`, so the marts go on counting it until its next run checks its files."""
    for partition in store.lake_partitions("scans"):
        frame = pd.read_parquet(store.lake_file("scans", partition))
        if "ignore_labels" not in frame.columns:
            frame["ignore_labels"] = None
        store.write_lake("scans", conform(frame, SCANS), partition)
    unchecked = [
        s for s in store.lake_partitions("segmentations") if not store.lake_file(SCAN_INTEGRITY.name, s).exists()
    ]
    for scan_id in unchecked:
        patient = pd.read_parquet(store.lake_file("segmentations", scan_id), columns=["patient_id"])["patient_id"]
        row = {c: None for c in SCAN_INTEGRITY.names} | {
            "scan_id": scan_id,
            "patient_id": patient.iloc[0],
            "status": "unchecked",
        }
        store.write_lake(SCAN_INTEGRITY.name, conform(pd.DataFrame([row]), SCAN_INTEGRITY), scan_id)
    return (
        f"2 -> 3: scans.ignore_labels added; {len(unchecked)} scan(s) processed before "
        "full-decode checks marked unchecked"
    )


MIGRATIONS = {1: _migrate_1_to_2, 2: _migrate_2_to_3}


def migrate(store: Store) -> list[str]:
    """Bring the store to SCHEMA_VERSION, one step at a time; returns what was done.

    Code older than the store refuses it: it cannot know what a newer layout means."""
    version = schema_version(store)
    if version > SCHEMA_VERSION:
        raise StoreVersionError(
            f"the store {store.root} has layout version {version}, newer than this "
            f"metorigin understands ({SCHEMA_VERSION}). Fix: update metorigin (pip install -U)"
        )
    done = []
    while 0 < version < SCHEMA_VERSION:
        done.append(MIGRATIONS[version](store))
        version += 1
        manifest = read_manifest(store)
        migrations = manifest.get("migrations", []) + done[-1:]
        _write_manifest(store, {**manifest, "schema_version": version, "migrations": migrations})
    return done


def settings_table(settings: StudySettings) -> pd.DataFrame:
    """The effective settings, one row per key path, with the steps that read each section."""
    rows = []
    for section, value in as_dict(settings).items():
        steps = ", ".join(step for step, sections in STEP_SETTINGS.items() if section in sections)
        items = value.items() if isinstance(value, dict) else [("", value)]
        for key, item in items:
            rows.append(
                {
                    "key": f"{section}.{key}" if key else section,
                    "value": json.dumps(item),
                    "section": section,
                    "read_by": steps or None,
                }
            )
    return conform(pd.DataFrame(rows).assign(study_hash=settings.study_hash()), STUDY_SETTINGS)


STORED_PARAMS = "radiomics_params.yaml"  # a study's own pyradiomics parameters, kept in its store


def _stored_params(store: Store, params: Path) -> str:
    """The radiomics parameter file as the store's study.yaml names it: `default` for the package's
    own (wherever it is installed), else a copy beside that study.yaml. A study file's parameter file
    must lie in its folder (study_file.py), and the copy keeps the store's study loadable when the
    original moves; the settings hash is of the file's content, so the copy is the same study."""
    if params.resolve() == DEFAULT_RADIOMICS_PARAMS.resolve():
        return PACKAGED_PARAMS
    if params.resolve() != (store.root / STORED_PARAMS).resolve():
        with atomic_path(store.root / STORED_PARAMS) as tmp:
            shutil.copyfile(params, tmp)
    return STORED_PARAMS


def bind_study(store: Store, settings: StudySettings, replace: bool = False) -> list[str]:
    """Migrate the store if it is older, then bind it to `settings` (or confirm it is bound to them).

    Refuses a store bound to another study unless `replace` is given; a replacement is logged in
    the manifest. Returns the migrations done (for the caller to report)."""
    done = migrate(store)
    manifest = read_manifest(store)
    new_hash = settings.study_hash()
    old_hash = manifest.get("study_hash")
    if old_hash and old_hash != new_hash and not replace:
        raise StoreStudyMismatch(
            f"the store {store.root} holds the study {manifest.get('study_name')!r} (hash {old_hash}); this run's "
            f"study {settings.name!r} has hash {new_hash} (another --seed, --densenet-epochs or segmentation method "
            f"is another study too). Fix: use a new --store for the new study, or pass --replace-study to re-run this "
            f"store under it (the stored settings: {store.root / 'study.yaml'}; compare with `metorigin study`)"
        )
    history = manifest.get("study_history", [])
    if old_hash != new_hash:
        history = history + [
            {
                "study_hash": new_hash,
                "study_name": settings.name,
                "bound_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "replaced": old_hash,
            }
        ]
    store.root.mkdir(parents=True, exist_ok=True)
    stored = as_dict(settings)
    stored["radiomics"]["params_file"] = _stored_params(store, Path(settings.radiomics.params_file))
    with atomic_path(store.root / "study.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(stored, sort_keys=False))
    _write_manifest(
        store,
        {
            **manifest,
            "schema_version": SCHEMA_VERSION,
            "study_hash": new_hash,
            "study_name": settings.name,
            "step_hashes": settings.step_hashes(),
            "study_history": history,
        },
    )
    return done
