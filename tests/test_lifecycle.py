"""The store follows the cohort: retired scans are moved, never deleted; a forgotten patient leaves no trace.

A small store is built by hand: two patients, P1 (scan S1, and S2 retired earlier) and P10 (scans
S10 and S11, and S12 retired earlier), so every id of P1 is a prefix of one of P10's.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from metorigin.core.erased_models import erase_models
from metorigin.core.forgetting import ErasureRefused, PatientNotFoundError, forget_patient, forgotten_patients
from metorigin.core.lifecycle import patient_hash, read_retired_log, retire_scans, scans_with_results
from metorigin.core.store import Store

DAY = datetime(2024, 5, 1, 10, 30)
LATER = datetime(2024, 5, 1, 16, 0)
OWNER = {"S1": "P1", "S2": "P1", "S10": "P10", "S11": "P10", "S12": "P10"}
LESIONS = {"S1": 2, "S2": 1, "S10": 2, "S11": 0, "S12": 1}
ERASED_IDS = [b"P10", b"S10", b"S11", b"S12"]  # P10's ids; none of P1's ids contains one of them


def _lesion_ids(scan: str) -> list[str]:
    return [f"{scan}-L{n:03d}" for n in range(1, LESIONS[scan] + 1)]


def _scan_frames(scan: str) -> dict[str, pd.DataFrame]:
    patient, lesions = OWNER[scan], _lesion_ids(scan)
    return {
        "segmentations": pd.DataFrame(
            {
                "scan_id": [scan],
                "patient_id": [patient],
                "label_map": [f"artifacts/segmentations/{scan}.nii.gz"],
                "liver_volume_ml": [1500.0],
            }
        ),
        "lesions": pd.DataFrame(
            {
                "lesion_id": pd.Series(lesions, dtype=object),
                "scan_id": scan,
                "patient_id": patient,
                "lesion_number": pd.array(range(1, len(lesions) + 1), dtype="Int64"),
                "volume_ml": [1.5] * len(lesions),
                "included": [True] * len(lesions),
            }
        ),
        "radiomics_features": pd.DataFrame(
            {
                "lesion_id": [lesion for lesion in lesions for _ in range(2)],
                "scan_id": scan,
                "patient_id": patient,
                "feature_name": ["original_firstorder_Mean", "original_shape_Sphericity"] * len(lesions),
                "feature_value": [42.0, 0.8] * len(lesions),
            }
        ),
        "scan_integrity": pd.DataFrame({"scan_id": [scan], "ok": [True]}),  # no patient_id column
    }


def _write_scan(store: Store, scan: str, base: Path | None = None, tag: bytes = b"") -> None:
    base = base or store.root
    for asset, frame in _scan_frames(scan).items():
        (base / "lake" / asset).mkdir(parents=True, exist_ok=True)
        frame.to_parquet(base / "lake" / asset / f"{scan}.parquet", index=False)
    artefacts = {"segmentations": ".nii.gz", "lesions": ".nii.gz", "lesion_slices": ".npz"}
    for kind, suffix in artefacts.items():
        (base / "artifacts" / kind).mkdir(parents=True, exist_ok=True)
        (base / "artifacts" / kind / f"{scan}{suffix}").write_bytes(f"{kind} of {scan}".encode() + tag)


def _make_store(root: Path) -> Store:
    store = Store(root)
    for scan in ("S1", "S10", "S11"):
        _write_scan(store, scan)
    # S2 (P1) and S12 (P10) were retired earlier: their files live under retired/ only.
    for scan in ("S2", "S12"):
        _write_scan(store, scan)
    retire_scans(store, {"S2": "row removed from scans.csv", "S12": "now excluded: kernel B70f is not B30s"}, DAY)
    patients = pd.DataFrame(
        {
            "patient_id": ["P1", "P10"],
            "label": ["crc", "pdac"],
            "age": [61.0, 70.0],
            "sex": ["F", "M"],
            "source_line": pd.array([2, 3], dtype="Int64"),
        }
    )
    scans = pd.DataFrame(
        {
            "scan_id": ["S1", "S10", "S11"],
            "patient_id": ["P1", "P10", "P10"],
            "image": ["images/S1", "images/S10", "images/S11"],
            "kernel": ["B30s", "B30s", "B30s"],
            "included": [True, True, True],
            "exclusion_reason": pd.Series([None, None, None], dtype=object),
        }
    )
    split = pd.DataFrame({"patient_id": ["P1", "P10"], "set": ["train", "test"]})  # as patient_split has it
    lesions = [lesion for scan in ("S1", "S10") for lesion in _lesion_ids(scan)]
    predictions = pd.DataFrame(
        {
            "lesion_id": lesions,
            "patient_id": [OWNER[lesion.split("-")[0]] for lesion in lesions],
            "probability": [0.1, 0.2, 0.8, 0.9],
            "model_id": "rf_none-abc",
        }
    )
    only_p10 = predictions[predictions["patient_id"] == "P10"].reset_index(drop=True)
    tables = {
        "patients": patients,
        "scans": scans,
        "patient_split": split,
        "radiomics_predictions": predictions,
        "densenet_predictions": only_p10,  # empty once P10 is forgotten
        "feature_importance": pd.DataFrame({"feature_name": ["original_firstorder_Mean"], "importance": [1.0]}),
        "study_settings": pd.DataFrame({"key": ["seed"], "value": ["42"]}),
    }
    for name, frame in tables.items():
        store.write_lake(name, frame)
    for arm, model, suffix in [("radiomics", "rf_none-abc", ".skops"), ("densenet", "densenet121-def", ".pt")]:
        folder = store.artifacts / "models" / arm
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{model}{suffix}").write_bytes(b"weights")
        card = {"model_id": model, "arm": arm, "seed": 42, "training_patients": 2}
        (folder / f"{model}.json").write_text(json.dumps(card, indent=2))
    with store.build_lock("test fixture") as build, duckdb.connect(str(build)) as con:
        for name in ("patients", "scans", "patient_split"):
            con.register("frame", tables[name])
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
        all_lesions = pd.concat([_scan_frames(s)["lesions"] for s in ("S1", "S10")], ignore_index=True)
        con.register("frame", all_lesions)
        con.execute("CREATE TABLE lesions AS SELECT * FROM frame")
        con.register("frame", predictions)
        con.execute("CREATE TABLE lesion_predictions AS SELECT lesion_id, probability FROM frame")  # lesion_id only
        con.execute(
            """
            CREATE TABLE tumor_burden AS
            SELECT 'scan' AS level, scan_id AS unit_id, scan_id, patient_id, 0.01 AS tumor_burden FROM scans
            UNION ALL
            SELECT 'patient', patient_id, NULL, patient_id, 0.01 FROM patients
            """
        )
        con.execute(
            "CREATE TABLE cohort_characteristics AS SELECT 'n' AS characteristic, label AS cohort, "
            "1.0 AS value FROM patients"
        )
        # A table dbt replaced: its blocks are free, but their bytes still name P10.
        con.execute("CREATE TABLE old_scans AS SELECT *, repeat(scan_id, 50) AS pad FROM scans")
        con.execute("CHECKPOINT")
        con.execute("DROP TABLE old_scans")
    return store


def _tree(root: Path) -> dict[str, str]:
    """Store-relative path -> sha256 of every file (the lock file aside)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix != ".lock"
    }


def _table(store: Store, sql: str) -> list[tuple]:
    with duckdb.connect(str(store.duckdb_path), read_only=True) as con:
        return con.execute(sql).fetchall()


# ---------------------------------------------------------------------------------------------
# retire


def test_retire_moves_exactly_the_scans_files_and_logs_them(tmp_path):
    store = Store(tmp_path)
    for scan in ("S1", "S10"):
        _write_scan(store, scan)
    store.write_lake("scans", pd.DataFrame({"scan_id": ["S1", "S10"], "patient_id": ["P1", "P10"]}))
    before = _tree(tmp_path)
    assert scans_with_results(store) == {"S1", "S10"}

    done = retire_scans(store, {"S1": "row removed from scans.csv", "S99": "never processed"}, DAY)

    assert [(r.scan_id, r.reason, r.n_files, r.folder) for r in done] == [
        ("S1", "row removed from scans.csv", 7, "retired/2024-05-01")
    ]
    after = _tree(tmp_path)
    moved = {path: f"retired/2024-05-01/{path}" for path in before if "/S1." in f"/{path}" or path.endswith("/S1.npz")}
    assert sorted(moved) == sorted(
        [f"lake/{a}/S1.parquet" for a in ("lesions", "radiomics_features", "scan_integrity", "segmentations")]
        + ["artifacts/segmentations/S1.nii.gz", "artifacts/lesions/S1.nii.gz", "artifacts/lesion_slices/S1.npz"]
    )
    for source, target in moved.items():  # moved with the same bytes; nothing else changed
        assert source not in after and after[target] == before[source]
    unchanged = {p: h for p, h in before.items() if p not in moved}
    assert {p: after[p] for p in unchanged} == unchanged  # S10 and lake/scans/all.parquet untouched
    assert set(after) == set(unchanged) | set(moved.values()) | {"retired/retired.jsonl"}
    assert scans_with_results(store) == {"S10"}

    (line,) = read_retired_log(store)
    assert line["scan_id"] == "S1" and line["reason"] == "row removed from scans.csv"
    assert line["when"] == DAY.isoformat() and line["folder"] == "retired/2024-05-01"
    assert sorted(f["from"] for f in line["files"]) == sorted(moved)
    assert all(f["to"] == moved[f["from"]] for f in line["files"])


def test_a_scan_retired_twice_in_a_day_keeps_both_copies(tmp_path):
    store = Store(tmp_path)
    _write_scan(store, "S1", tag=b" first")
    _write_scan(store, "S10")
    retire_scans(store, {"S1": "now excluded: kernel B70f is not B30s"}, DAY)
    _write_scan(store, "S1", tag=b" second")  # back in the cohort, processed, then out again
    (again,) = retire_scans(store, {"S1": "row removed from scans.csv"}, LATER)

    assert again.folder == "retired/2024-05-01.2" and again.n_files == 7
    first = tmp_path / "retired/2024-05-01/artifacts/segmentations/S1.nii.gz"
    second = tmp_path / "retired/2024-05-01.2/artifacts/segmentations/S1.nii.gz"
    assert first.read_bytes().endswith(b" first") and second.read_bytes().endswith(b" second")
    assert [line["folder"] for line in read_retired_log(store)] == ["retired/2024-05-01", "retired/2024-05-01.2"]
    assert (tmp_path / "lake/lesions/S10.parquet").is_file()
    # A third scan retired the same day still goes to the day's own folder.
    (other,) = retire_scans(store, {"S10": "row removed from scans.csv"}, LATER)
    assert other.folder == "retired/2024-05-01"
    assert scans_with_results(store) == set()


def test_retire_never_builds_a_path_from_an_id(tmp_path):
    store = Store(tmp_path)
    _write_scan(store, "S1")
    before = _tree(tmp_path)
    assert retire_scans(store, {"../lake/lesions/S1": "hostile", "S1.parquet": "x", "": "empty"}, DAY) == []
    assert _tree(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# forget


def test_forget_removes_every_trace_of_the_patient_and_nothing_else(tmp_path):
    store = _make_store(tmp_path)
    before = _tree(tmp_path)
    published_before = store.duckdb_path.read_bytes()
    assert all(ident in published_before for ident in (b"P10", b"S10", b"S11"))  # the byte check can see them
    p1_before = {
        name: _table(store, f"SELECT * FROM {name} WHERE patient_id = 'P1' ORDER BY ALL")
        for name in ("patients", "scans", "lesions", "tumor_burden", "patient_split")
    }
    predictions_before = pd.read_parquet(store.lake_file("radiomics_predictions"))
    empty_before = pd.read_parquet(store.lake_file("densenet_predictions"))

    report = forget_patient(store, "P10", who="dpo@hospital", why="consent withdrawn (request 2024-05-01)", when=LATER)

    # What was found and erased.
    assert report.scans == ["S10", "S11", "S12"]
    assert report.files == {
        "lake/segmentations": 2,
        "lake/lesions": 2,
        "lake/radiomics_features": 2,
        "lake/scan_integrity": 2,
        "artifacts/segmentations": 2,
        "artifacts/lesions": 2,
        "artifacts/lesion_slices": 2,
        "retired": 7,
    }
    assert report.lake_rows == {
        "patients": 1,
        "scans": 2,
        "patient_split": 1,
        "radiomics_predictions": 2,
        "densenet_predictions": 2,
    }
    assert report.duckdb_rows == {
        "patients": 1,
        "scans": 2,
        "patient_split": 1,
        "lesions": 2,
        "lesion_predictions": 2,
        "tumor_burden": 3,
    }
    assert report.models_marked == ["densenet121-def", "rf_none-abc"]
    assert report.retired_log_lines == 1
    text = "\n".join(report.lines())
    assert "P10" not in text and "S10" not in text and "sha256:" in text

    after = _tree(tmp_path)
    # No file name or file content under the store names P10 or its scans (the DuckDB files included).
    for path in after:
        assert not any(ident.decode() in path for ident in ERASED_IDS), path
        data = (tmp_path / path).read_bytes()
        assert not [ident for ident in ERASED_IDS if ident in data], path
    assert not (tmp_path / "retired/2024-05-01/lake/lesions/S12.parquet").exists()
    assert b"P10" not in (tmp_path / ".build/feature_store.lock").read_bytes()  # the lock holder names a hash
    assert [line["scan_id"] for line in read_retired_log(store)] == ["S2"]

    # P1 is untouched: its per-scan files and retired copies byte-identical, its rows the same.
    p1_files = [p for p in before if "/S1." in p or "/S2." in p or p.endswith(("/S1.npz", "/S2.npz"))]
    assert len(p1_files) == 14 and all(after[p] == before[p] for p in p1_files)
    for name in ("feature_importance", "study_settings"):
        assert after[f"lake/{name}/all.parquet"] == before[f"lake/{name}/all.parquet"]
    for name, rows in p1_before.items():
        assert _table(store, f"SELECT * FROM {name} WHERE patient_id = 'P1' ORDER BY ALL") == rows
    assert _table(store, "SELECT count(*) FROM cohort_characteristics") == [(2,)]  # left to the next build
    assert _table(store, "SELECT unit_id FROM tumor_burden ORDER BY 1") == [("P1",), ("S1",)]
    assert _table(store, "SELECT lesion_id FROM lesion_predictions ORDER BY 1") == [("S1-L001",), ("S1-L002",)]
    predictions = pd.read_parquet(store.lake_file("radiomics_predictions"))
    pd.testing.assert_frame_equal(
        predictions, predictions_before[predictions_before["patient_id"] == "P1"].reset_index(drop=True)
    )
    emptied = pd.read_parquet(store.lake_file("densenet_predictions"))
    assert emptied.empty and list(emptied.columns) == list(empty_before.columns)
    assert emptied.dtypes.to_dict() == empty_before.dtypes.to_dict()
    assert pd.read_parquet(store.lake_file("patients"))["patient_id"].tolist() == ["P1"]

    # Model cards: marked, the rest of the card unchanged, no id in them.
    for path in (tmp_path / "artifacts/models").rglob("*.json"):
        card = json.loads(path.read_text())
        assert card["needs_retraining"] == {
            "since": LATER.isoformat(),
            "why": "a patient of its test data was erased (consent withdrawn): its test metrics counted them",
        }
        assert card["seed"] == 42 and "P10" not in path.read_text()

    # The log: the hash, never the id.
    log = (tmp_path / "erasure_log.jsonl").read_text()
    assert "P10" not in log and "S1" not in log
    (entry,) = [json.loads(line) for line in log.splitlines()]
    assert entry["patient_sha256"] == patient_hash("P10") == hashlib.sha256(b"P10").hexdigest()
    assert entry["who"] == "dpo@hospital" and entry["n_scans"] == 3 and entry["when"] == LATER.isoformat()
    assert entry["files_erased"] == report.files and entry["duckdb_rows_erased"] == report.duckdb_rows
    assert entry["lake_rows_erased"] == report.lake_rows and entry["models_marked"] == report.models_marked
    assert report.log_path == tmp_path / "erasure_log.jsonl"
    assert forgotten_patients(store) == {patient_hash("P10"): LATER.date().isoformat()}

    # Nothing is left to find: a second request is told so, and that the patient was erased.
    with pytest.raises(PatientNotFoundError, match="was erased on 2024-05-01T16:00:00"):
        forget_patient(store, "P10", who="dpo", why="again", when=LATER)


def test_forgetting_the_patient_of_S1_leaves_S10_alone(tmp_path):
    store = _make_store(tmp_path)
    # Lesion ids alone say which scan they belong to: `<scan>-L<n>` (S1-L1x-L001 is another scan's).
    lesion_ids = ["S1-L001", "S1-L007", "S10-L001", "S1-L1x-L001", "S1-Lx"]
    store.write_lake("external_predictions", pd.DataFrame({"lesion_id": lesion_ids, "p": [0.5] * 5}))
    with store.build_lock("test") as build, duckdb.connect(str(build)) as con:
        con.execute("INSERT INTO lesion_predictions SELECT unnest(?::VARCHAR[]), 0.5", [lesion_ids])
    before = _tree(tmp_path)
    report = forget_patient(store, "P1", who="dpo", why="consent withdrawn", when=LATER)
    assert report.scans == ["S1", "S2"]
    kept = ["S10-L001", "S1-L1x-L001", "S1-Lx"]
    assert pd.read_parquet(store.lake_file("external_predictions"))["lesion_id"].tolist() == kept
    assert _table(store, "SELECT lesion_id FROM lesion_predictions WHERE probability = 0.5 ORDER BY 1") == [
        (k,) for k in sorted(kept)
    ]
    after = _tree(tmp_path)
    for path, digest in before.items():
        if any(f"/{s}." in f"/{path}" for s in ("S10", "S11", "S12")):
            assert after[path] == digest, path
    assert not [p for p in after if "/S1." in p or "/S2." in p]
    assert _table(store, "SELECT scan_id FROM scans ORDER BY 1") == [("S10",), ("S11",)]
    assert _table(store, "SELECT lesion_id FROM lesions ORDER BY 1") == [("S10-L001",), ("S10-L002",)]
    assert _table(store, "SELECT unit_id FROM tumor_burden ORDER BY 1") == [("P10",), ("S10",), ("S11",)]
    assert [line["scan_id"] for line in read_retired_log(store)] == ["S12"]
    assert not (tmp_path / "retired/2024-05-01/lake/lesions/S2.parquet").exists()


def test_an_unknown_patient_is_refused_and_nothing_changes(tmp_path):
    store = _make_store(tmp_path)
    before = _tree(tmp_path)
    with pytest.raises(PatientNotFoundError) as error:
        forget_patient(store, "P2", who="dpo", why="consent withdrawn", when=LATER)
    message = str(error.value)
    assert str(tmp_path) in message and "'P2'" in message
    assert f'metorigin sql --store {tmp_path} "select patient_id from patients"' in message
    assert _tree(tmp_path) == before
    assert forgotten_patients(store) == {}


def test_the_log_may_not_name_the_patient(tmp_path):
    store = _make_store(tmp_path)
    before = _tree(tmp_path)
    with pytest.raises(ErasureRefused, match="why names the patient"):
        forget_patient(store, "P10", who="dpo", why="P10 withdrew consent", when=LATER)
    assert _tree(tmp_path) == before


def test_forget_works_before_any_database_was_built(tmp_path):
    store = Store(tmp_path)
    for scan in ("S1", "S10"):
        _write_scan(store, scan)
    store.write_lake("scans", pd.DataFrame({"scan_id": ["S1", "S10"], "patient_id": ["P1", "P10"]}))
    report = forget_patient(store, "P10", who="dpo", why="consent withdrawn", when=LATER)
    assert report.scans == ["S10"] and report.duckdb_rows == {} and report.models_marked == []
    assert scans_with_results(store) == {"S1"}
    assert pd.read_parquet(store.lake_file("scans"))["scan_id"].tolist() == ["S1"]
    assert _table(store, "SELECT count(*) FROM duckdb_tables()") == [(0,)]  # an empty database, published


def test_forget_removes_every_report_and_one_being_written(tmp_path):
    """A report's figures may show the patient: finished ones, and one still in its hidden folder
    (core/files.py atomic_folder: being written, or left by a killed writer), all go."""
    store = _make_store(tmp_path)
    reports = store.artifacts / "report"
    for name in ("run-1", ".run-2.4242.tmp"):
        (reports / name).mkdir(parents=True)
        (reports / name / "lesions_fig.png").write_bytes(b"S10")
    report = forget_patient(store, "P10", who="dpo", why="consent withdrawn", when=LATER)
    assert report.files["artifacts/report"] == 2 and not any(reports.iterdir())


def _model(store: Store, arm: str, model_id: str, **card) -> Path:
    folder = store.artifacts / "models" / arm
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{model_id}.skops").write_bytes(b"weights")
    (folder / f"{model_id}.json").write_text(json.dumps({"model_id": model_id, "arm": arm, "seed": 42, **card}))
    return folder / f"{model_id}.skops"


def test_forgetting_a_training_patient_deletes_the_models_that_learnt_from_them(tmp_path):
    """P1 is in the training set. The fixture's cards name no patients, so the split decides: they
    learnt from P1 and go. A card whose list leaves P1 out stays; a model stacked on a removed one
    goes with it; the DenseNet's resume file (no card) goes; the registry says so at once."""
    store = _make_store(tmp_path)
    models = store.artifacts / "models"
    (models / "densenet" / "checkpoint.pt").write_bytes(b"resume")
    other = _model(store, "radiomics", "other-1", training_patient_ids=["P10"], feature_reference={"x": [1.0, 2.0]})
    _model(
        store,
        "combined",
        "stack-1",
        components={"radiomics": "rf_none-abc", "densenet": "densenet121-def"},
        training_patient_ids=[],
        calibration={"slope": 0.3},
    )
    ids = ["densenet121-def", "other-1", "rf_none-abc", "stack-1"]
    store.write_lake("models", pd.DataFrame({"model_id": ids, "file_sha256": "abc", "needs_retraining": False}))

    report = forget_patient(store, "P1", who="dpo", why="consent withdrawn", when=LATER)
    assert sorted(report.models_removed) == ["densenet121-def", "rf_none-abc", "stack-1"]
    assert report.models_marked == [] and report.files["artifacts/models"] == 4  # 3 models and the resume file
    assert sorted(p.name for p in models.rglob("*") if p.is_file() and p.suffix != ".json") == ["other-1.skops"]
    assert other.read_bytes() == b"weights"
    stack = json.loads((models / "combined" / "stack-1.json").read_text())
    assert stack["removed"] == {
        "when": LATER.isoformat(),
        "why": "a patient it learnt from was erased (consent withdrawn)",
        "patient_sha256": patient_hash("P1"),  # so that a forget killed half-way and run again finds it
    }
    assert "calibration" not in stack and stack["components"]["radiomics"] == "rf_none-abc"
    assert json.loads((models / "radiomics" / "other-1.json").read_text())["feature_reference"] == {"x": [1.0, 2.0]}
    registry = pd.read_parquet(store.lake_file("models")).set_index("model_id")
    assert registry["removed"].notna().to_dict() == {
        "densenet121-def": True,
        "other-1": False,
        "rf_none-abc": True,
        "stack-1": True,
    }
    assert registry.loc["stack-1", "removed"].startswith("2024-05-01: its file was deleted, a patient it learnt")
    assert registry["needs_retraining"].to_dict() == {
        "densenet121-def": True,
        "other-1": False,
        "rf_none-abc": True,
        "stack-1": True,
    }
    text = "\n".join(report.lines())
    assert "models deleted, having learnt from the patient (3; their cards kept as tombstones)" in text
    (entry,) = [json.loads(line) for line in (tmp_path / "erasure_log.jsonl").read_text().splitlines()]
    assert sorted(entry["models_removed"]) == sorted(report.models_removed)


def test_a_forget_killed_after_the_tombstones_finishes_the_models_when_run_again(tmp_path):
    """Killed after the cards became tombstones (their lists no longer name the patient) and before
    the registry and the log were written: the second run finds the models by the tombstones' hash,
    deletes what is left of them, and says so in the registry and the log."""
    store = _make_store(tmp_path)
    _model(store, "radiomics", "listed-1", training_patient_ids=["P1"])
    registered = pd.DataFrame({"model_id": ["listed-1"], "file_sha256": "abc", "needs_retraining": False})
    store.write_lake("models", registered)
    card = store.artifacts / "models" / "radiomics" / "listed-1.json"
    erase_models(store, [(card, json.loads(card.read_text()))], "P1", None, DAY)  # the first run, cut short
    (store.artifacts / "models" / "radiomics" / "listed-1.skops").write_bytes(b"restored from a backup")
    report = forget_patient(store, "P1", who="dpo", why="consent withdrawn", when=LATER)
    assert "listed-1" in report.models_removed
    assert not (store.artifacts / "models" / "radiomics" / "listed-1.skops").exists()
    assert json.loads(card.read_text())["removed"]["when"] == DAY.isoformat()  # the first run's tombstone
    registry = pd.read_parquet(store.lake_file("models")).set_index("model_id")
    assert registry.loc["listed-1", "removed"].startswith("2024-05-01: its file was deleted")
