"""Nothing wrong is stored silently: every bad input the issue lists, on one tiny cohort, one process.

A good run first; then the cohort is spoiled in every way at once (damaged files, undeclared
labels, unsafe ids, broken geometry, a removed row, a newly excluded scan) and run again; then
repaired and run again; then a patient is forgotten. After each run: the exit status, the message
a user sees (file, row, fix), which scans were processed, that the earlier results of a damaged
scan are unchanged, and that every mart agrees with the lake. Refusals before any work (bad CSVs,
a bad --select, a store in use) are checked against the good store, which must not change.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from metorigin.cli import main as cli
from metorigin.cli.session import summary
from metorigin.core.config import RunConfig
from metorigin.core.forgetting import forgotten_patients
from metorigin.core.store import Store
from metorigin.definitions import build_definitions
from metorigin.runtime.runner import run_selection
from tests.helpers import NOT_STUDY, append_row, replace_in

pytestmark = pytest.mark.slow


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _sql(store: Store, query: str) -> pd.DataFrame:
    with store.connect_read_only() as con:
        return con.execute(query).df()


def _run(cohort: Path, store: Path):
    """A `metorigin run` of the imaging and feature store, in this process, and its summary."""
    defs = build_definitions(RunConfig(cohort=str(cohort), store=str(store), workers=2))
    report = run_selection(defs, dg.DagsterInstance.ephemeral(), NOT_STUDY, progress=lambda _: None)
    return report, summary(report, store)


def _consistent(store: Store) -> None:
    """Every mart agrees with the lake and with `scans`: no row of a scan that is not included."""
    scans = _sql(store, "select scan_id, included from scans")
    included = set(scans.loc[scans["included"], "scan_id"])
    for table in ("segmentations", "lesions", "radiomics_features", "lesion_slices", "lesion_features"):
        assert set(_sql(store, f"select distinct scan_id from {table}")["scan_id"]) <= included, table
    burden = _sql(store, "select scan_id, liver_volume_ml from tumor_burden where level = 'scan'").set_index("scan_id")
    lake = store.read_lake("segmentations").set_index("scan_id").loc[sorted(burden.index)]
    assert set(burden.index) == included & set(store.lake_partitions("segmentations"))
    np.testing.assert_allclose(burden.loc[lake.index, "liver_volume_ml"], lake["liver_volume_ml"])
    lesions = store.read_lake("lesions")
    expected = set(lesions.loc[lesions["included"] & lesions["scan_id"].isin(included), "lesion_id"])
    assert set(_sql(store, "select lesion_id from training_matrix")["lesion_id"]) == expected


def _nifti_with_zero_spacing(source: Path, target: Path) -> None:
    """The header's first pixdim set to 0 in the bytes (nibabel and ITK writers would not write it)."""
    raw = bytearray(gzip.decompress(source.read_bytes()))
    raw[80:84] = struct.pack("<f", 0.0)  # pixdim[1]: the header's 8 float32s start at byte 76
    target.write_bytes(bytes(raw))


@pytest.fixture(scope="module")
def lab(tiny_cohort, tmp_path_factory):
    """The tiny cohort copied (its files too: they get damaged), a good run, and the state after it."""
    root = tmp_path_factory.mktemp("bad")
    cohort, store = root / "cohort", root / "store"
    shutil.copytree(tiny_cohort, cohort)
    # Seven scans are enough (S0001, the DICOM series, and the two excluded ones are tested elsewhere).
    scans_csv = cohort / "scans.csv"
    scans_csv.write_text(
        "".join(r for r in scans_csv.read_text().splitlines(True) if not r.startswith(("S0001,", "S0009,", "S0010,")))
    )
    report, summary = _run(cohort, store)
    assert report.ok, summary
    yield cohort, Store(store), root


def _semicolons(cohort: Path) -> None:
    path = cohort / "patients.csv"
    path.write_text(path.read_text().replace(",", ";"))


def _latin1(cohort: Path) -> None:
    path = cohort / "patients.csv"
    path.write_bytes(path.read_bytes() + "P009,colorectal,50,F,T1,N0,M1 Müller\n".encode("latin-1"))


def _header_only(cohort: Path) -> None:
    path = cohort / "scans.csv"
    path.write_text(path.read_text().splitlines()[0] + "\n")


# (case, how the cohort is spoiled, the text a user must see). Checked against the good store,
# which each refusal must leave exactly as it was.
REFUSED = [
    ("semicolons", _semicolons, "patients.csv line 1: the columns are separated by semicolons, not commas. Fix: save"),
    ("latin-1", _latin1, "patients.csv line 10: line 10 is not UTF-8 text (byte 0xFC at column"),
    ("header only", _header_only, "scans.csv: no scans to process: the file has a header line and no rows. Fix: add"),
]


@pytest.mark.parametrize("case, spoil, message", REFUSED, ids=[c[0] for c in REFUSED])
def test_a_refused_cohort_says_why_and_leaves_the_store_alone(lab, tmp_path, capsys, case, spoil, message):
    cohort, store, _ = lab
    copy = tmp_path / "cohort"
    copy.mkdir()
    for entry in cohort.iterdir():
        (copy / entry.name).symlink_to(entry) if entry.is_dir() else shutil.copy(entry, copy / entry.name)
    spoil(copy)
    before = _digests(store.lake)
    assert cli.main(["run", "--cohort", str(copy), "--store", str(store.root)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert _digests(store.lake) == before


def test_a_bad_select_is_a_bad_argument(lab, capsys, tmp_path, monkeypatch):
    cohort, store, _ = lab
    assert cli.main(["run", "--cohort", str(cohort), "--store", str(store.root), "--select", "key:(scans"]) == 2
    err = capsys.readouterr().err
    assert "--select 'key:(scans' is not an asset selection" in err and "Fix: e.g. --select 'key:scans'" in err
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "instance"))  # what `run` sets is undone after the test
    assert cli.main(["run", "--cohort", str(cohort), "--store", str(store.root), "--select", "key:nonexistent"]) == 2
    assert "the selection 'key:nonexistent' matches no asset" in capsys.readouterr().err


def test_a_store_in_use_makes_another_session_wait_or_fail_fast(lab, capsys):
    cohort, store, _ = lab
    holder = textwrap.dedent(f"""
        import sys, time
        from metorigin.core.lease import store_session
        with store_session({str(store.root)!r}, "run 1234 (another seed)"):
            print("held", flush=True)
            time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, encoding="utf-8")
    try:
        assert process.stdout.readline().strip() == "held"
        code = cli.main(["run", "--cohort", str(cohort), "--store", str(store.root), "--seed", "5", "--no-wait"])
        err = capsys.readouterr().err
        assert code == 2 and f"the store {store.root} is in use by run 1234 (another seed) (pid {process.pid}" in err
    finally:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def spoiled(lab):
    """Every per-scan and per-row case at once, in one run."""
    cohort, store, root = lab
    kept = {
        asset: store.lake_file(asset, "S0002").read_bytes()
        for asset in ("segmentations", "lesions", "radiomics_features")
    }
    originals = root / "originals"
    shutil.copytree(cohort, originals)
    # S0002: the image cut in half; S0003: NaN voxels; S0004: lesions labelled 3, not the declared 2;
    # S0007: no lesion label at all (a warning, not an error).
    image = cohort / "images" / "S0002.nii.gz"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    nan = sitk.Cast(sitk.ReadImage(str(cohort / "images" / "S0003.nii.gz")), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(nan)
    array[array.shape[0] // 2, :5, :5] = np.nan
    spoilt = sitk.GetImageFromArray(array)
    spoilt.CopyInformation(nan)
    sitk.WriteImage(spoilt, str(cohort / "images" / "S0003.nii.gz"))
    for sid, old, new in (("S0004", 2, 3), ("S0007", 2, 1)):
        mask = sitk.ReadImage(str(cohort / "masks" / f"{sid}.nii.gz"))
        sitk.WriteImage(sitk.ChangeLabel(mask, {old: new}), str(cohort / "masks" / f"{sid}.nii.gz"))
    # S0005: its row removed; S0006: now a sharp kernel the study excludes.
    scans_csv = cohort / "scans.csv"
    scans_csv.write_text(
        "".join(line for line in scans_csv.read_text().splitlines(True) if not line.startswith("S0005,"))
    )
    replace_in(
        scans_csv,
        "S0006,P006,images/S0006.nii.gz,masks/S0006.nii.gz,1,2,B30s",
        "S0006,P006,images/S0006.nii.gz,masks/S0006.nii.gz,1,2,B70f",
    )
    # New rows: an id that climbs out of the store, zero spacing, negative spacing.
    escape = append_row(
        scans_csv, "../../../../tmp/x,P005,images/S0008.nii.gz,masks/S0008.nii.gz,1,2,B30s,1.5,portal_venous"
    )
    _nifti_with_zero_spacing(cohort / "images" / "S0008.nii.gz", cohort / "images" / "zero.nii")
    zero = append_row(scans_csv, "S0011,P005,images/zero.nii,,1,2,B30s,1.5,portal_venous")
    sitk.WriteImage(sitk.ReadImage(str(cohort / "images" / "S0008.nii.gz")), str(cohort / "images" / "neg.mha"))
    header = (cohort / "images" / "neg.mha").read_bytes()
    (cohort / "images" / "neg.mha").write_bytes(header.replace(b"ElementSpacing = ", b"ElementSpacing = -", 1))
    negative = append_row(scans_csv, "S0012,P005,images/neg.mha,,1,2,B30s,1.5,portal_venous")
    report, summary = _run(cohort, store.root)
    return report, summary, kept, originals, {"escape": escape, "zero": zero, "negative": negative}


# (scan, what it shows in `scans`, what the summary says about it)
SCAN_CASES = [
    (
        "S0002",
        False,
        "scan S0002 (scans.csv line 2): image S0002.nii.gz cannot be decoded fully: the compressed data ends early",
    ),
    ("S0003", False, "voxels are NaN or infinite"),
    ("S0004", False, "the mask holds label value(s) 3 that scans.csv does not declare"),
    ("S0007", True, "scan S0007 (scans.csv line 6): lesion label 2 is absent from the mask"),
    ("S0008", True, None),
]


@pytest.mark.parametrize("scan_id, included, message", SCAN_CASES, ids=[c[0] for c in SCAN_CASES])
def test_each_bad_scan_fails_alone_with_its_message(spoiled, lab, scan_id, included, message):
    report, summary, *_ = spoiled
    _, store, _ = lab
    scans = _sql(store, "select * from scans").set_index("scan_id")
    assert bool(scans.loc[scan_id, "included"]) is included, scans.loc[scan_id, "exclusion_reason"]
    if message:
        assert message in summary, summary
    if not included:
        assert scans.loc[scan_id, "exclusion_reason"].startswith("its files failed their checks: ")
        assert store.read_lake("scan_integrity", [scan_id]).iloc[0]["status"] == "failed"


def test_a_damaged_file_never_replaces_the_earlier_results(spoiled, lab):
    _, _, kept, *_ = spoiled
    _, store, _ = lab
    for asset, content in kept.items():
        assert store.lake_file(asset, "S0002").read_bytes() == content, asset


def test_unsafe_ids_and_broken_geometry_are_refused_and_nothing_is_written_outside(spoiled, lab):
    report, summary, _, _, lines = spoiled
    _, store, root = lab
    assert not report.ok
    assert (
        f"scans.csv line {lines['escape']} (../../../../tmp/x): scan_id '../../../../tmp/x' has characters" in summary
    )
    # A negative MHA spacing shows in the header ingest reads; a zero NIfTI pixdim is read as 1 mm there,
    # and only the scan's full check, reading the header as stored, sees it.
    assert f"scans.csv line {lines['negative']} (S0012): image 'images/neg.mha': the voxel spacing -" in summary
    assert f"scan S0011 (scans.csv line {lines['zero']}): its header: the voxel spacing 0," in summary, summary
    assert not any(root.parent.rglob("x.parquet")) and not Path("/tmp/x.parquet").exists()
    assert {"S0011", "S0012"}.isdisjoint(store.lake_partitions("segmentations"))


def test_scans_that_left_the_cohort_are_retired_and_no_longer_counted(spoiled, lab):
    _, summary, *_ = spoiled
    _, store, _ = lab
    assert "note: scan S0005 retired (its row was removed from scans.csv)" in summary
    assert "note: scan S0006 retired (now excluded: kernel B70f is not B30s)" in summary
    for sid in ("S0005", "S0006"):
        assert sid not in store.lake_partitions("segmentations")
        assert list(store.root.glob(f"retired/*/lake/segmentations/{sid}.parquet"))
    _consistent(store)


@pytest.fixture(scope="module")
def repaired(spoiled, lab):
    cohort, store, _ = lab
    _, _, _, originals, _ = spoiled
    for folder in ("images", "masks"):
        shutil.rmtree(cohort / folder)
        shutil.copytree(originals / folder, cohort / folder)
    shutil.copy(originals / "scans.csv", cohort / "scans.csv")
    return _run(cohort, store.root)


def test_a_repaired_cohort_comes_back_whole_and_consistent(repaired, lab):
    report, summary = repaired
    _, store, _ = lab
    assert report.ok, summary
    scans = _sql(store, "select scan_id, included, integrity_status from scans where included")
    assert sorted(scans["scan_id"]) == [f"S000{i}" for i in range(2, 9)]
    assert set(scans["integrity_status"]) == {"passed"}
    _consistent(store)


def test_forget_erases_every_trace_of_a_patient(repaired, lab):
    _, store, _ = lab
    (store.root / "logs").mkdir(exist_ok=True)  # a CLI run's log that names the patient's scan
    (store.root / "logs" / "run-1.log").write_text("scan S0003 (scans.csv line 3): ok\n")
    (store.root / "logs" / "run-2.log").write_text("scan S0004 (scans.csv line 4): ok\n")
    environment = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    metorigin = Path(sys.executable).with_name("metorigin")
    forget = subprocess.run(
        [metorigin, "forget", "--store", store.root, "--patient", "P003"],
        capture_output=True,
        encoding="utf-8",
        env=environment,
    )
    assert forget.returncode == 0, forget.stdout + forget.stderr
    assert "every trace of the patient is erased" in forget.stdout
    assert "run logs naming the patient deleted: 1" in forget.stdout
    assert not (store.root / "logs" / "run-1.log").exists() and (store.root / "logs" / "run-2.log").exists()
    for path in store.root.rglob("*"):
        if path.is_file() and ".build" not in path.parts:
            assert b"S0003" not in path.read_bytes() and b"P003" not in path.read_bytes(), path
    assert _sql(store, "select count(*) as n from scans where patient_id = 'P003'")["n"].item() == 0
    _consistent(store)


def test_a_forgotten_patient_still_in_the_cohort_is_refused_by_line_and_never_written_again(repaired, lab):
    """After the erasure above, the unchanged cohort is ingested again (the group did not remove the
    rows): the patient's rows are refused by file and line, and nothing of them is stored."""
    cohort, store, _ = lab
    assert "P003" in (cohort / "patients.csv").read_text()  # still listed
    environment = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    metorigin = Path(sys.executable).with_name("metorigin")
    ingest = subprocess.run(
        [metorigin, "run", "--cohort", cohort, "--store", store.root, "--select", "group:cohort"],
        capture_output=True,
        encoding="utf-8",
        env=environment,
    )
    output = ingest.stdout + ingest.stderr
    assert ingest.returncode == 1, output  # the rows check failed: said, and the rest went on
    (when,) = forgotten_patients(store).values()  # the day of the erasure, as its log has it

    def line_of(name: str, text: str) -> int:
        return next(n for n, row in enumerate((cohort / name).read_text().splitlines(), 1) if text in row)

    for name, row in (("patients.csv", "P003,"), ("scans.csv", "S0003,")):
        expected = f"{name} line {line_of(name, row)}: a patient forgotten on {when}. Fix: remove the row"
        assert expected in output, output
    assert "P003" not in output and "S0003" not in output
    for path in store.root.rglob("*"):
        if path.is_file() and ".build" not in path.parts:
            assert b"S0003" not in path.read_bytes() and b"P003" not in path.read_bytes(), path
    assert "S0004" in set(_sql(store, "select scan_id from scans")["scan_id"])  # the others are ingested
