"""Hostile inputs, round two (issue 28): inputs whose size must never multiply into the output,
nothing counted twice (a scan listed under two ids, a partition no row describes), images too thin
for 3-D features, a report folder killed half-way, and a scan's file that stops answering.

Real ingest runs (Dagster, the store's lake) on a copy of the tiny cohort; the model-file cases are
in tests/test_model_files.py and tests/test_nnunet.py.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from metorigin.core.config import RunConfig
from metorigin.core.errors import CohortFileError, ScanProcessingError
from metorigin.core.files import atomic_folder
from metorigin.core.lifecycle import patient_hash
from metorigin.core.store import Store
from metorigin.core.study import STEP_SETTINGS as STUDY_STEPS
from metorigin.core.study import InclusionCriteria, get_settings
from metorigin.definitions import build_definitions
from metorigin.defs.common.names import per_scan_keys
from metorigin.defs.common.partitions import scan_partitions
from metorigin.imaging.cohort import load_cohort
from metorigin.imaging.fingerprints import cohort_fingerprint
from metorigin.imaging.radiomics import crop_lesion, extract_lesions, feature_names, long_table
from metorigin.imaging.scan_steps import Scan, file_fingerprints
from metorigin.runtime.execution import RunReport, executor
from metorigin.runtime.runner import run_selection
from tests.helpers import append_row

COPIES = 10_000
STUDY = get_settings("quick")
GOOD_ROW = "{sid},P002,{image},masks/S0002.nii.gz,1,2,B30s,1.5,portal_venous"


def test_ten_thousand_copies_of_a_patient_are_one_message_and_the_valid_rows_go_on(cohort, tmp_path):
    patients = cohort / "patients.csv"
    text = patients.read_text()
    header, first, *_ = text.splitlines()
    bad_ages = [f"Q{i:03d},colorectal,{200 + i},F,T3,N1,M1" for i in range(150)]  # distinct ids, each invalid
    long_stage = "P900,colorectal,60,F," + "T" * 2_000 + ",N1,M1"
    patients.write_text(text + "\n".join([first] * COPIES + bad_ages + [long_stage]) + "\n")
    store = tmp_path / "store"
    defs = build_definitions(RunConfig(cohort=str(cohort), store=str(store), workers=2))
    report = run_selection(defs, dg.DagsterInstance.ephemeral(), "key:patients", progress=lambda _: None)

    (check,) = [text for name, text in report.failed_checks if name == "patients:rows_valid"]
    lines = check.splitlines()
    assert len(lines) == 101 and len(check) < 50_000  # the first 100 problems and where the rest are
    first_id = first.split(",")[0]
    (duplicate,) = [line for line in lines if "appears on" in line]
    assert f"patient_id '{first_id}' appears on {COPIES + 1} lines (2, " in duplicate and "and 9991 more" in duplicate
    full_list = Store(store).root / "logs"
    (written,) = list(full_list.glob("patients-problems-*.log"))
    assert lines[-1].endswith(f"every one is in {written}")
    everything = written.read_text().splitlines()
    assert len(everything) == 1 + 150 + 1  # one per duplicated id, one per bad row
    assert any("the t_stage cell holds 2,000 characters (at most 1,000)" in m for m in everything)
    assert max(len(m) for m in everything) < 500
    stored = set(Store(store).read_lake("patients")["patient_id"])
    assert first_id not in stored and "P900" not in stored and not any(p.startswith("Q") for p in stored)
    assert len(stored) == len(text.splitlines()) - 2  # every other patient of the cohort went on


@pytest.mark.timeout(120)  # the failure this guards against is a read that never returns
def test_a_fifo_as_an_image_or_inside_a_dicom_folder_is_refused_at_ingest_and_nothing_blocks(cohort):
    os.mkfifo(cohort / "pipe.nii.gz")
    (cohort / "series").mkdir()
    os.mkfifo(cohort / "series" / "slice_0001.dcm")
    fifo = append_row(cohort / "scans.csv", GOOD_ROW.format(sid="S0100", image="pipe.nii.gz"))
    folder = append_row(cohort / "scans.csv", GOOD_ROW.format(sid="S0101", image="series"))
    loaded = load_cohort(cohort)
    by_line = {e.row: e.message for e in loaded.errors}
    assert "image 'pipe.nii.gz' cannot be used: it is a FIFO (named pipe), not a regular file" in by_line[fifo]
    assert "its entry 'slice_0001.dcm' is a FIFO (named pipe)" in by_line[folder]
    scans = loaded.scans.set_index("scan_id")
    assert not scans.loc[["S0100", "S0101"], "valid"].any()
    assert scans["valid"].sum() == len(scans) - 2  # the other scans go on


@pytest.mark.timeout(60)
def test_a_scan_file_that_stops_answering_fails_that_scan_after_the_read_limit(cohort, tmp_path):
    """A stalled network mount cannot be made here; a FIFO put in place of a scan's image after ingest
    blocks the same way (open() waits in the kernel for ever). The scan's first read, its fingerprint,
    is given up after the study's `cluster.read_timeout_s`, naming the file and the fix."""
    row = load_cohort(cohort).scans.set_index("scan_id", drop=False).loc["S0002"].to_dict()
    row["image"] = "S0002.nii.gz"  # the cohort's images/ is the shared fixture's: the FIFO goes beside it
    image = cohort / row["image"]
    os.mkfifo(image)
    study = dataclasses.replace(STUDY, cluster=dataclasses.replace(STUDY.cluster, read_timeout_s=1))
    scan = Scan(row, cohort, Store(tmp_path / "store"), study)
    try:
        with pytest.raises(ScanProcessingError) as failed:
            file_fingerprints(scan)
        # Asked again while the first read is still blocked (a later step, a sensor's next tick): no
        # second thread waits on it, the answer comes at once.
        with pytest.raises(ScanProcessingError) as again:
            file_fingerprints(scan, "inputs")
    finally:  # the abandoned read: a writer that opens and closes the FIFO lets it end
        os.close(os.open(image, os.O_WRONLY | os.O_NONBLOCK))
    assert failed.value.scan_id == "S0002" and failed.value.step == "scan_integrity"
    assert failed.value.problem == "reading S0002.nii.gz took longer than 1 s and was given up"
    assert "a stalled mount" in failed.value.fix and "cluster.read_timeout_s" in failed.value.fix
    assert again.value.step == "inputs" and "did not return the last time either" in again.value.problem


def test_a_long_failed_qc_verdict_still_excludes_and_a_broken_link_in_a_series_folder_is_no_crash(cohort):
    """Found in review: a qc.csv row refused for a long cell dropped its fail verdict, and a broken
    symlink inside a DICOM folder made the folder check raise out of the cohort load."""
    (cohort / "qc.csv").write_text(f"scan_id,verdict,reason\nS0002,fail,{'motion ' * 200}\n")
    (cohort / "series").mkdir()
    (cohort / "series" / "gone.dcm").symlink_to(cohort / "nowhere.dcm")
    append_row(cohort / "scans.csv", GOOD_ROW.format(sid="S0101", image="series"))
    loaded = load_cohort(cohort)
    scans = loaded.scans.set_index("scan_id")
    assert not scans.loc["S0002", "included"] and "a cell is too long" in scans.loc["S0002", "exclusion_reason"]
    assert any("the reason cell holds 1,399 characters (at most 1,000)" in e.message for e in loaded.errors)
    assert not scans.loc["S0101", "valid"]  # an empty series folder: refused with its reason, no crash


def test_a_scan_listed_twice_under_two_ids_is_refused_with_the_first_one_s_line(cohort):
    shutil.copy(cohort / "images" / "S0002.nii.gz", cohort / "copy.nii.gz")  # the same bytes, another name
    shutil.copytree(cohort / "images" / "S0001", cohort / "series_copy")  # a DICOM folder, copied
    file_copy = append_row(cohort / "scans.csv", GOOD_ROW.format(sid="S0100", image="copy.nii.gz"))
    row = GOOD_ROW.format(sid="S0101", image="series_copy").replace("masks/S0002", "masks/S0001")
    folder_copy = append_row(cohort / "scans.csv", row)
    loaded = load_cohort(cohort)
    by_line = {e.row: e.message for e in loaded.errors}
    assert "its image has the same content as scan S0002's (line 3)" in by_line[file_copy]
    assert "its image has the same content as scan S0001's (line 2)" in by_line[folder_copy]
    assert "give it the rescan's own image" in by_line[file_copy]
    scans = loaded.scans.set_index("scan_id")
    assert not scans.loc[["S0100", "S0101"], "included"].any()
    assert scans.loc[["S0001", "S0002"], "included"].all()  # the first of each pair is the one kept


def test_a_partition_no_row_describes_fails_at_once_and_the_next_ingest_removes_it(cohort, tmp_path):
    defs = build_definitions(RunConfig(cohort=str(cohort), store=str(tmp_path / "store"), workers=2))
    instance = dg.DagsterInstance.ephemeral()
    assert run_selection(defs, instance, "group:cohort", progress=lambda _: None).ok
    instance.add_dynamic_partitions(scan_partitions.name, ["S9999"])  # what the UI's "Add a partition" does
    report = RunReport()
    executor(defs.resolve_job_def, instance, report)("process_scan", per_scan_keys(defs.resolve_asset_graph()), "S9999")
    (failure,) = report.step_failures
    assert "no row of scans.csv describes this partition" in failure and "the next ingest removes" in failure
    assert not Store(tmp_path / "store").lake_file("scan_integrity", "S9999").exists()
    assert run_selection(defs, instance, "group:cohort", progress=lambda _: None).ok
    assert "S9999" not in instance.get_dynamic_partitions(scan_partitions.name)
    assert "S0002" in instance.get_dynamic_partitions(scan_partitions.name)


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from metorigin.core.files import atomic_folder
with atomic_folder(Path(sys.argv[1])) as work:
    for i in range(10):
        (work / f"figure{i}.svg").write_text("<svg/>")
    os.kill(os.getpid(), signal.SIGKILL)  # killed a third of the way through, as a report can be
"""


def test_a_report_folder_killed_half_way_is_never_seen_and_the_next_writer_removes_it(tmp_path):
    """Reports (study and external) are written through `atomic_folder`: whole, or not at all."""
    reports = tmp_path / "artifacts" / "report"
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(reports / "run-1")], check=False)
    assert killed.returncode == -signal.SIGKILL
    assert not (reports / "run-1").exists()  # no folder of 10 of 32 files that looks like a report
    (left,) = reports.iterdir()
    assert left.name.startswith(".run-1.") and len(list(left.iterdir())) == 10  # hidden, and its pid is gone
    (reports / ".run-0.otherhost.1.tmp").mkdir()  # another host's writer: never this host's to remove
    with atomic_folder(reports / "run-2") as work:  # the next report removes it
        (work / "report.html").write_text("<html/>")
    assert sorted(p.name for p in reports.iterdir()) == [".run-0.otherhost.1.tmp", "run-2"]
    shutil.rmtree(reports / ".run-0.otherhost.1.tmp")
    assert (reports / "run-2" / "report.html").read_text() == "<html/>"
    with pytest.raises(RuntimeError), atomic_folder(reports / "run-2") as work:  # a failed rewrite: the old stays
        (work / "report.html").write_text("half")
        raise RuntimeError("a figure failed")
    assert sorted(p.name for p in reports.iterdir()) == ["run-2"]
    assert (reports / "run-2" / "report.html").read_text() == "<html/>"
    with atomic_folder(reports / "run-2") as work:  # a rewrite that succeeds replaces it whole
        (work / "report.html").write_text("v2")
    assert sorted(p.name for p in reports.iterdir()) == ["run-2"]
    assert [p.name for p in (reports / "run-2").iterdir()] == ["report.html"]
    assert (reports / "run-2" / "report.html").read_text() == "v2"


def _slab(path, slices: int, lesion_slices: int) -> None:
    """A 40x40 image of `slices` slices at 1.5 mm, with a 12x12-voxel lesion (label 2) on the first
    `lesion_slices` of them, inside a liver (label 1) that fills the rest: image at `path`, mask beside."""
    spacing = (0.8, 0.8, 1.5)
    hu = np.full((slices, 40, 40), 60, np.int16)
    mask = np.ones((slices, 40, 40), np.uint8)
    rng = np.random.default_rng(0)
    hu[:lesion_slices, 10:22, 10:22] = rng.integers(0, 120, (lesion_slices, 12, 12))
    mask[:lesion_slices, 10:22, 10:22] = 2
    for array, name in ((hu, path), (mask, path.with_name(f"mask_{path.name}"))):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        sitk.WriteImage(image, str(name))


def test_an_image_with_fewer_slices_than_the_study_s_minimum_is_excluded_with_the_reason(cohort):
    _slab(cohort / "thin.nii.gz", slices=2, lesion_slices=1)
    append_row(cohort / "scans.csv", "S0100,P002,thin.nii.gz,mask_thin.nii.gz,1,2,B30s,1.5,portal_venous")
    scans = load_cohort(cohort).scans.set_index("scan_id")
    assert scans.loc["S0100", "valid"] and not scans.loc["S0100", "included"]
    assert scans.loc["S0100", "exclusion_reason"] == "too few slices (2; the study's minimum is 3)"
    two = load_cohort(cohort, InclusionCriteria(min_slices=2)).scans.set_index("scan_id")
    assert two.loc["S0100", "included"]  # the study's own minimum, when it sets one
    assert InclusionCriteria(min_slices=3) == InclusionCriteria()  # the default (its hash: the pinned study hashes)
    hashes = {m: dataclasses.replace(STUDY, inclusion=InclusionCriteria(min_slices=m)).step_hashes() for m in (3, 4)}
    assert hashes[3] == STUDY.step_hashes()
    assert [s for s in STUDY_STEPS if hashes[3][s] != hashes[4][s]] == ["cohort"]  # a new minimum: the cohort's step


@pytest.mark.parametrize("lesion_slices", [1, 3])
def test_shape_features_of_a_lesion_on_one_slice_are_nan_with_the_reason(tmp_path, lesion_slices):
    _slab(tmp_path / "ct.nii.gz", slices=5, lesion_slices=lesion_slices)
    image = sitk.ReadImage(str(tmp_path / "ct.nii.gz"))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "mask_ct.nii.gz")))
    lesion = {"lesion_id": "L1", "scan_id": "S1", "patient_id": "P1", "lesion_number": 1}
    lesion |= {"bbox_z0": 0, "bbox_z1": lesion_slices - 1, "bbox_y0": 10, "bbox_y1": 21, "bbox_x0": 10, "bbox_x1": 21}
    crop = crop_lesion(image, (labels == 2).astype(np.int32), lesion, margin=2)
    names = list(feature_names())
    table = long_table(pd.DataFrame([lesion]), extract_lesions([crop], workers=1), names, "v")
    shape = table[table["feature_class"] == "shape"]
    assert len(shape) == 14 and len(table) == len(names)
    others = table[table["feature_class"] != "shape"]
    assert others["feature_value"].notna().all() and others["undefined_reason"].isna().all()  # texture kept
    if lesion_slices == 1:
        in_a_slice = ["original_shape_VoxelVolume", "original_shape_Maximum2DDiameterSlice"]
        kept = shape.set_index("feature_name").loc[in_a_slice]
        assert kept["feature_value"].notna().all() and kept["undefined_reason"].isna().all()  # defined in a slice
        mesh = shape[~shape["feature_name"].isin(kept.index)]
        assert len(mesh) == 12 and mesh["feature_value"].isna().all()
        assert set(mesh["undefined_reason"]) == {"the lesion is one voxel thick along z: its 3-D shape is undefined"}
    else:  # three slices: a volume, its shape defined
        assert shape["feature_value"].notna().all() and shape["undefined_reason"].isna().all()


@pytest.mark.timeout(60)  # the failure this guards against is a sensor tick that never returns
def test_a_fifo_as_scans_csv_is_refused_and_the_sensor_s_fingerprint_does_not_block(cohort):
    (cohort / "scans.csv").unlink()
    os.mkfifo(cohort / "scans.csv")
    assert len(cohort_fingerprint(cohort)) == 16  # returns: the sensor's tick goes on
    with pytest.raises(CohortFileError) as refused:
        load_cohort(cohort)
    assert "scans.csv: " in refused.value.message and "is not a regular file (it is a FIFO (named pipe))" in str(
        refused.value
    )


def test_a_forgotten_patient_s_rows_are_dropped_as_read_and_named_by_their_true_line_only(cohort):
    patients = cohort / "patients.csv"
    lines = patients.read_text().splitlines()
    patients.write_text("\n".join([lines[0], lines[1], "", *lines[2:]]) + "\n")  # a blank line before P002..
    (cohort / "qc.csv").write_text("scan_id,verdict,reason\nS0003,fail,motion\nS0004,pass,\n")
    loaded = load_cohort(cohort, forgotten={patient_hash("P003"): "2026-12-01"})
    text = patients.read_text().splitlines()
    line = next(n for n, row in enumerate(text, 1) if row.startswith("P003,"))
    messages = [e.message for e in loaded.errors]
    assert f"patients.csv line {line}: a patient forgotten on 2026-12-01. Fix: remove the row" in messages[0]
    assert messages[1].startswith("scans.csv line 4: a patient forgotten on 2026-12-01")
    assert messages[2].startswith("qc.csv line 2: a verdict on a scan of a patient forgotten on 2026-12-01")
    assert not any("P003" in m or "S0003" in m for m in messages), messages
    assert not any(e.row_id in ("P003", "S0003") for e in loaded.errors)
    assert "P003" not in set(loaded.patients["patient_id"]) and "S0003" not in set(loaded.scans["scan_id"])
    assert "S0004" in set(loaded.scans["scan_id"])  # the others go on
