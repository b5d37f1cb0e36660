"""Forgetting a patient whose consent is withdrawn: every trace in the lake, the artefacts, the
retired copies, the published tables and the models that learnt from them, logged."""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd

from metorigin.core.erased_models import erase_models, mark_registry
from metorigin.core.errors import MetoriginError
from metorigin.core.files import atomic_path
from metorigin.core.lifecycle import (
    MODELS,
    REPORTS,
    RETIRED,
    RETIRED_LOG,
    ErasureRefused,
    append_line,
    checked_path,
    patient_hash,
    per_scan_files,
    read_lines,
    read_retired_log,
    retired_folders,
    subfolders,
)
from metorigin.core.store import UNPARTITIONED, Store

ERASURE_LOG = "erasure_log.jsonl"


ID_COLUMNS = ("patient_id", "scan_id", "lesion_id", "unit_id")


class PatientNotFoundError(MetoriginError, LookupError):
    """`forget_patient` found no trace of the patient: nothing was erased."""


def forgotten_patients(store: Store) -> dict[str, str]:
    """sha256 of every patient erased from this store -> the date of the erasure (ingest drops them)."""
    return {line["patient_sha256"]: str(line.get("when", ""))[:10] for line in read_lines(store.root / ERASURE_LOG)}


@dataclass
class ErasureReport:
    patient_sha256: str
    when: str
    scans: list[str]  # the erased scan ids (in memory only; the log holds their number)
    files: dict[str, int] = field(default_factory=dict)  # "lake/<asset>", "artifacts/<kind>", "retired"
    lake_rows: dict[str, int] = field(default_factory=dict)  # lake table (all.parquet) -> rows erased
    duckdb_rows: dict[str, int] = field(default_factory=dict)  # DuckDB table -> rows erased
    models_removed: list[str] = field(default_factory=list)  # deleted, their cards tombstones
    models_marked: list[str] = field(default_factory=list)  # kept (they only tested on the patient)
    log_path: Path | None = None
    retired_log_lines: int = 0  # lines removed from retired/retired.jsonl

    def lines(self) -> list[str]:
        """A short human summary (no patient or scan id in it)."""

        def counts(items: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(items.items())) or "none"

        out = [
            f"erased patient sha256:{self.patient_sha256[:16]}... and {len(self.scans)} scan(s)",
            f"files deleted: {sum(self.files.values())} ({counts(self.files)})",
            f"lake rows deleted: {sum(self.lake_rows.values())} ({counts(self.lake_rows)})",
            f"DuckDB rows deleted: {sum(self.duckdb_rows.values())} ({counts(self.duckdb_rows)}); "
            "the file was rewritten, so deleted rows leave no bytes behind",
        ]
        if self.retired_log_lines:
            out.append(f"retired.jsonl lines removed: {self.retired_log_lines}")
        if self.models_removed:
            out.append(
                f"models deleted, having learnt from the patient ({len(self.models_removed)}; their cards kept as "
                f"tombstones): {', '.join(self.models_removed)}"
            )
        if self.models_marked:
            out.append(
                f"models kept, marked needs_retraining (they only tested on the patient): "
                f"{', '.join(self.models_marked)}"
            )
        if not (self.models_removed or self.models_marked):
            out.append("no model learnt from or tested on the patient")
        out.append(f"logged in {self.log_path}; counts and other aggregates are stale until the next build")
        return out


def forget_patient(store: Store, patient_id: str, who: str, why: str, when: datetime) -> ErasureReport:
    """Erase every trace of `patient_id` from the store; the one deliberate deletion (consent withdrawn).

    Under the build lock: finds the patient's scans (the lake's `scans` table, per-scan lake files
    and retired lake files, the DuckDB tables) and their lesions; deletes from the DuckDB working
    copy every row with the patient's `patient_id`, `scan_id`, `lesion_id` or `unit_id` and rewrites
    the file so no freed block keeps their bytes (the lock publishes it); deletes every model that
    learnt from the patient, its card kept as a tombstone, and marks those that only tested on them
    for retraining (erased_models.py), in the registry too; rewrites the lake's unpartitioned tables
    without the patient's rows; removes the patient's lines from `retired/retired.jsonl`; deletes
    the scans' per-scan lake files, artefacts and retired copies; and appends one line to
    `erasure_log.jsonl` with the hash of the id, never the id. Tables without id columns (counts
    such as `cohort_characteristics`) are left for the next build, which the caller runs.

    Everything is read and checked before the first change; the deletions then run in an order
    that leaves the patient findable (per-scan files last) if a run is killed half-way, so running
    it again finishes the job. Raises PatientNotFoundError (nothing changed) when the store holds
    no trace of the patient, and ErasureRefused when `who` or `why` names the patient.
    """
    if not patient_id:
        raise ErasureRefused("no patient id given; nothing was erased")
    for name, text in (("who", who), ("why", why)):
        if re.search(rf"(?<![A-Za-z0-9._-]){re.escape(patient_id)}(?![A-Za-z0-9._-])", text or ""):
            raise ErasureRefused(
                f"{name} names the patient; the erasure log must not hold the id. Fix: describe the request "
                "without the id (e.g. 'consent withdrawn, request of 2024-05-01')"
            )
    digest = patient_hash(patient_id)
    with store.build_lock(f"forget (patient sha256 {digest[:12]})") as build:
        found = _find_patient(store, patient_id, build)
        if not found.any_trace:
            raise PatientNotFoundError(_not_found_message(store, digest, patient_id))
        cards = _model_cards(store)  # read before anything changes: a broken file stops us here
        read_retired_log(store)
        read_lines(store.root / ERASURE_LOG)
        report = ErasureReport(digest, when.isoformat(), sorted(found.scans))
        if build.exists():
            report.duckdb_rows = _purge_duckdb(build, found)
        else:  # no database built yet: an empty one, so that the lock has something to publish
            duckdb.connect(str(build)).close()
        erasure = erase_models(store, cards, patient_id, found.split_set(), when)
        mark_registry(store, erasure, cards)
        report.models_removed, report.models_marked = list(erasure.removed), erasure.marked
        report.lake_rows = _rewrite_lake_tables(store, found)
        report.retired_log_lines = _drop_retired_lines(store, found.scans)
        report.files = _delete_scan_files(store, found.scans)
        report.files.update(_delete_reports(store))
        report.files.update({f"artifacts/{MODELS}": erasure.files} if erasure.files else {})
        report.log_path = store.root / ERASURE_LOG
        append_line(
            report.log_path,
            {
                "when": report.when,
                "who": who,
                "why": why,
                "patient_sha256": digest,
                "n_scans": len(report.scans),
                "files_erased": report.files,
                "lake_rows_erased": report.lake_rows,
                "duckdb_rows_erased": report.duckdb_rows,
                "retired_log_lines_erased": report.retired_log_lines,
                "models_removed": report.models_removed,
                "models_marked": report.models_marked,
            },
        )
    return report


def _not_found_message(store: Store, digest: str, patient_id: str) -> str:
    earlier = [line for line in read_lines(store.root / ERASURE_LOG) if line.get("patient_sha256") == digest]
    note = f" (a patient with this id was erased on {earlier[-1]['when']}, see {ERASURE_LOG})" if earlier else ""
    return (
        f"no trace of patient {patient_id!r} in the store {store.root} (lake, artefacts, retired scans, "
        f"DuckDB file){note}; nothing was erased. Fix: check the id: "
        f'`metorigin sql --store {store.root} "select patient_id from patients"`'
    )


@dataclass
class _Found:
    patient_id: str
    scans: set[str] = field(default_factory=set)
    lesions: set[str] = field(default_factory=set)
    lake_frames: dict[str, pd.DataFrame] = field(default_factory=dict)  # asset -> lake/<asset>/all.parquet
    duckdb_rows: int = 0
    published_set: str | None = None  # the patient's set in the DuckDB file's patient_split

    def mask(self, frame: pd.DataFrame) -> pd.Series:
        """Rows that reference the patient: its patient_id, one of its scans or lesions (by id or by
        their `<scan>-L<n>` form), or a unit_id that is the patient or one of its scans."""
        hit = pd.Series(False, index=frame.index)
        text = {c: frame[c].astype("string") for c in ID_COLUMNS if c in frame.columns}
        if "patient_id" in text:
            hit |= (text["patient_id"] == self.patient_id).fillna(False)
        if "scan_id" in text:
            hit |= text["scan_id"].isin(self.scans).fillna(False)
        if "lesion_id" in text:
            hit |= text["lesion_id"].isin(self.lesions).fillna(False)
            for scan in self.scans:  # `<scan>-L<digits>`: S1's lesions, not those of S10 or of S1-L2
                lesion = text["lesion_id"]
                own = lesion.str.startswith(f"{scan}-L") & lesion.str.slice(len(scan) + 2).str.fullmatch("[0-9]+")
                hit |= own.fillna(False)
        if "unit_id" in text:
            hit |= text["unit_id"].isin(self.scans | {self.patient_id}).fillna(False)
        return hit.astype(bool)

    def lake_mask(self, asset: str) -> pd.Series:
        return self.mask(self.lake_frames[asset])

    def split_set(self) -> str | None:
        """The patient's set in the study's split (train, validation, test), None when not in it."""
        split = self.lake_frames.get("patient_split")
        if split is None or "set" not in split.columns:
            return self.published_set
        sets = split.loc[self.mask(split), "set"].dropna().astype(str)
        return sets.iloc[0] if len(sets) else self.published_set

    @property
    def any_trace(self) -> bool:
        return bool(self.scans or self.duckdb_rows or any(self.lake_mask(a).any() for a in self.lake_frames))


def _find_patient(store: Store, patient_id: str, build: Path) -> _Found:
    found = _Found(patient_id)
    lesions_by_file: dict[str, set[str]] = {}  # per-scan file's scan id -> lesion ids in it
    # Per-scan lake files, in the lake and in every retired folder: the file name is the scan id.
    for base in [store.root, *retired_folders(store)]:
        for scan, paths in per_scan_files(base).items():
            for path in paths:
                if not path.name.endswith(".parquet"):
                    continue
                frame = pd.read_parquet(path)
                if "patient_id" in frame.columns and (frame["patient_id"].astype("string") == patient_id).any():
                    found.scans.add(scan)
                    if "scan_id" in frame.columns:
                        mine = frame["patient_id"].astype("string") == patient_id
                        found.scans.update(frame.loc[mine.fillna(False), "scan_id"].dropna().astype(str))
                if "lesion_id" in frame.columns:
                    lesions_by_file.setdefault(scan, set()).update(frame["lesion_id"].dropna().astype(str))
    # Unpartitioned lake tables (scans, patient_split, predictions, ...).
    for folder in subfolders(store.lake):
        path = folder / f"{UNPARTITIONED}.parquet"
        if path.is_file():
            frame = pd.read_parquet(path)
            found.lake_frames[folder.name] = frame
            if {"patient_id", "scan_id"} <= set(frame.columns):
                mine = (frame["patient_id"].astype("string") == patient_id).fillna(False)
                found.scans.update(frame.loc[mine, "scan_id"].dropna().astype(str))
    if build.exists():
        with duckdb.connect(":memory:") as con:
            con.execute("ATTACH ? AS old (READ_ONLY)", [str(build)])
            for schema, table, columns in _duckdb_tables(con):
                if "patient_id" not in columns:
                    continue
                name = f"old.{_q(schema)}.{_q(table)}"
                mine = f"SELECT * FROM {name} WHERE patient_id::VARCHAR = ?"
                found.duckdb_rows += con.execute(f"SELECT count(*) FROM ({mine})", [patient_id]).fetchone()[0]
                if "scan_id" in columns:
                    query = f"SELECT DISTINCT scan_id::VARCHAR FROM ({mine}) WHERE scan_id IS NOT NULL"
                    rows = con.execute(query, [patient_id]).fetchall()
                    found.scans.update(r[0] for r in rows)
                if table == "patient_split" and "set" in columns:  # the lake's copy may be rewritten already
                    sets = con.execute(f'SELECT "set"::VARCHAR FROM ({mine})', [patient_id]).fetchall()
                    found.published_set = sets[0][0] if sets else None
    # Lesions: those in the scans' per-scan files, and those of the patient's rows in the lake tables.
    for scan in found.scans:
        found.lesions.update(lesions_by_file.get(scan, set()))
    for frame in found.lake_frames.values():
        if "lesion_id" in frame.columns:
            found.lesions.update(frame.loc[found.mask(frame), "lesion_id"].dropna().astype(str))
    return found


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _duckdb_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, set[str]]]:
    """(schema, table, lower-case column names) of every table of the attached database `old`."""
    rows = con.execute(
        "SELECT c.schema_name, c.table_name, list(lower(c.column_name)) "
        "FROM duckdb_columns() AS c JOIN duckdb_tables() AS t USING (database_name, schema_name, table_name) "
        "WHERE c.database_name = 'old' GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    return [(schema, table, set(columns)) for schema, table, columns in rows]


def _purge_duckdb(build: Path, found: _Found) -> dict[str, int]:
    """Delete the patient's rows from every table of the working copy, then copy the database into a
    fresh file (`COPY FROM DATABASE`) that replaces it: DELETE only marks rows deleted and a
    checkpoint only frees their blocks, whose bytes (and those of tables dbt replaced earlier)
    stay in the file; the fresh file holds the live rows only."""
    fresh = build.with_name(f".{build.name}.{os.getpid()}.forget.tmp")
    for suffix in ("", ".wal"):
        Path(f"{fresh}{suffix}").unlink(missing_ok=True)
    erased: dict[str, int] = {}
    try:
        with duckdb.connect(":memory:") as con:
            con.execute("ATTACH ? AS old", [str(build)])
            con.execute("CREATE TEMP TABLE forget_scans AS SELECT unnest(?::VARCHAR[]) AS id", [sorted(found.scans)])
            con.execute(
                "CREATE TEMP TABLE forget_lesions AS SELECT unnest(?::VARCHAR[]) AS id", [sorted(found.lesions)]
            )
            for schema, table, columns in _duckdb_tables(con):
                where = _duckdb_predicate(columns)
                if not where:
                    continue
                name = f"old.{_q(schema)}.{_q(table)}"
                params = {"pid": found.patient_id} if "$pid" in where else {}
                n = con.execute(f"DELETE FROM {name} WHERE {where}", params).fetchone()[0]
                if n:
                    erased[table if schema == "main" else f"{schema}.{table}"] = int(n)
            con.execute("CHECKPOINT old")
            con.execute("ATTACH ? AS fresh", [str(fresh)])
            con.execute("COPY FROM DATABASE old TO fresh")
            con.execute("DETACH fresh")
            con.execute("DETACH old")
        os.replace(fresh, build)
        Path(f"{build}.wal").unlink(missing_ok=True)
    finally:
        for suffix in ("", ".wal"):
            Path(f"{fresh}{suffix}").unlink(missing_ok=True)
    return erased


def _duckdb_predicate(columns: set[str]) -> str:
    """The SQL twin of `_Found.mask`, over the temp tables forget_scans and forget_lesions."""
    parts = []
    if "patient_id" in columns:
        parts.append("patient_id::VARCHAR = $pid")
    if "scan_id" in columns:
        parts.append("scan_id::VARCHAR IN (SELECT id FROM forget_scans)")
    if "lesion_id" in columns:
        parts.append("lesion_id::VARCHAR IN (SELECT id FROM forget_lesions)")
        parts.append(
            "EXISTS (SELECT 1 FROM forget_scans AS s WHERE starts_with(lesion_id::VARCHAR, s.id || '-L') "
            "AND regexp_full_match(substr(lesion_id::VARCHAR, length(s.id) + 3), '[0-9]+'))"
        )
    if "unit_id" in columns:
        parts.append("(unit_id::VARCHAR = $pid OR unit_id::VARCHAR IN (SELECT id FROM forget_scans))")
    return " OR ".join(f"coalesce({p}, false)" for p in parts)


def _model_cards(store: Store) -> list[tuple[Path, dict]]:
    """Every model card (artifacts/models/**/<model_id>.json) with its content."""
    folder = store.artifacts / MODELS
    paths = sorted(p for p in folder.rglob("*.json") if not p.name.startswith(".")) if folder.is_dir() else []
    cards = []
    for path in paths:
        try:
            card = json.loads(checked_path(store, path).read_text())
        except json.JSONDecodeError as error:
            raise ErasureRefused(f"the model card {path} is not JSON ({error}); nothing was erased") from None
        if isinstance(card, dict):
            cards.append((path, card))
    return cards


def _rewrite_lake_tables(store: Store, found: _Found) -> dict[str, int]:
    """lake/<asset>/all.parquet without the patient's rows; untouched when it has none (same bytes).

    Written as every lake file is (pandas to_parquet), so the columns and pandas dtypes stay, even
    when no row is left."""
    erased = {}
    for asset, frame in found.lake_frames.items():
        hit = found.mask(frame)
        if not hit.any():
            continue
        kept = frame.loc[~hit]
        keep_index = not isinstance(frame.index, pd.RangeIndex)
        if not keep_index:
            kept = kept.reset_index(drop=True)
        with atomic_path(checked_path(store, store.lake / asset / f"{UNPARTITIONED}.parquet")) as tmp:
            kept.to_parquet(tmp, index=keep_index)
        erased[asset] = int(hit.sum())
    return erased


def _drop_retired_lines(store: Store, scans: set[str]) -> int:
    path = store.root / RETIRED / RETIRED_LOG
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.strip() or json.loads(line).get("scan_id") not in scans]
    if len(kept) != len(lines):
        with atomic_path(path) as tmp:
            tmp.write_text("".join(kept))
    return len(lines) - len(kept)


def _delete_scan_files(store: Store, scans: set[str]) -> dict[str, int]:
    """Unlink the scans' per-scan lake files, artefacts and retired copies; counts per folder."""
    counts: dict[str, int] = {}
    emptied: set[Path] = set()
    retired_root = store.root / RETIRED
    for base in [store.root, *retired_folders(store)]:
        for scan, paths in per_scan_files(base).items():
            if scan not in scans:
                continue
            for path in paths:
                checked_path(store, path).unlink()
                key = RETIRED if base != store.root else path.parent.relative_to(store.root).as_posix()
                counts[key] = counts.get(key, 0) + 1
                if base != store.root:
                    emptied.add(path.parent)
    # Retired folders left empty by the erasure go too (an empty `<date>.2` would still say something).
    for folder in sorted(emptied, key=lambda p: len(p.parts), reverse=True):
        while folder != retired_root and folder.is_relative_to(retired_root) and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    return counts


def _delete_reports(store: Store) -> dict[str, int]:
    """Every study report goes: its figures draw lesions and ids (some as glyphs, not text), so no
    listing can tell which show the patient. The next study run writes a new one. A report being
    written (or left by a killed writer) in its hidden folder goes too."""
    root = store.artifacts / REPORTS
    unfinished = sorted(p for p in root.glob(".*.tmp") if p.is_dir() and not p.is_symlink())  # atomic_folder's
    reports = [checked_path(store, folder) for folder in [*subfolders(root), *unfinished]]
    for folder in reports:
        shutil.rmtree(folder)
    return {f"artifacts/{REPORTS}": len(reports)} if reports else {}
