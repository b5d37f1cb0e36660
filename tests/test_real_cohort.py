"""The whole imaging pipeline on real CT: a cohort built from the public test data, bad rows included.

The primary sites below are assigned by this test; no public data carries them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import SimpleITK as sitk

from metorigin.core.config import RunConfig
from metorigin.core.store import Store
from metorigin.definitions import build_definitions
from metorigin.runtime.runner import run_selection
from tests.helpers import NOT_STUDY, another_scan_like

# Every test here runs the pipeline or a subprocess: `make test`, not `make test-fast`.
pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data"

# The TotalSegmentator CT is non-contrast at 3 mm and the LiTS header says 5 mm: the rows declare the
# study protocol so that the scans are included; the pipeline itself takes every header as given.
# TS1's organ map labels a dozen organs: `*` ignores every label it does not declare.
SCANS = (
    "scan_id,patient_id,image,mask,liver_labels,lesion_labels,ignore_labels,"
    "kernel,slice_thickness_mm,contrast_phase\n"
    """TS1,R1,totalsegmentator/example_ct_sm.nii.gz,totalsegmentator/example_seg.nii.gz,5,,*,B30s,1.5,portal_venous
LITS1,R2,lits/liver_ct.nii.gz,lits/liver_mask.nii.gz,1,2,,B30s,1.5,portal_venous
LITS2,R3,lits/liver_ct_rescan.nii.gz,lits/liver_mask.nii.gz,7,2,,B30s,1.5,portal_venous
BAD4,R4,lits/liver_ct.nii.gz,totalsegmentator/example_seg.nii.gz,5,,*,B30s,1.5,portal_venous
"""
)
PATIENTS = """patient_id,primary_site,age,sex
R1,colorectal,61,M
R2,pancreatic,70,F
R3,colorectal,55,F
R4,pancreatic,66,M
"""


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    cohort, store = root / "cohort", root / "store"
    cohort.mkdir()
    for folder in ("lits", "totalsegmentator"):
        shutil.copytree(DATA / folder, cohort / folder)
    another_scan_like(cohort / "lits" / "liver_ct.nii.gz", cohort / "lits" / "liver_ct_rescan.nii.gz")
    (cohort / "scans.csv").write_text(SCANS)
    (cohort / "patients.csv").write_text(PATIENTS)
    defs = build_definitions(RunConfig(cohort=str(cohort), store=str(store), workers=2))
    with dg.instance_for_test() as instance:
        report = run_selection(defs, instance, selection=NOT_STUDY, progress=lambda _: None)
    return report, Store(store), cohort


def test_mask_on_an_unrelated_grid_is_rejected_at_ingest_and_never_processed(outcome):
    report, store, _ = outcome
    problems = dict(report.failed_checks)["scans:rows_valid"]
    assert "scans.csv line 5 (BAD4): the mask spans" in problems
    assert "BAD4" not in store.lake_partitions("segmentations")


def test_undeclared_liver_label_fails_that_scan_only(outcome):
    report, store, _ = outcome
    assert sorted(dict(report.failed_checks)) == ["[LITS2] scan_integrity:inputs_valid", "scans:rows_valid"]
    failure = dict(report.failed_checks)["[LITS2] scan_integrity:inputs_valid"]
    assert failure.startswith("scan LITS2 (scans.csv line 4): ")
    assert "no liver label 7 (label values present: 1, 2)" in failure and "Fix: set liver_labels" in failure
    assert not report.step_failures  # the check stopped the scan's other steps; it is not reported twice
    assert store.lake_partitions("lesion_slices") == ["LITS1", "TS1"]
    assert store.read_lake("scan_integrity", ["LITS2"]).iloc[0]["status"] == "failed"


def test_organ_map_without_lesion_label_gives_zero_lesions(outcome):
    _, store, cohort = outcome
    seg = store.read_lake("segmentations", ["TS1"]).iloc[0]
    organs = sitk.GetArrayFromImage(sitk.ReadImage(str(cohort / "totalsegmentator" / "example_seg.nii.gz")))
    assert seg["liver_volume_ml"] == pytest.approx((organs == 5).sum() * 27 / 1000)
    assert seg["lesion_volume_ml"] == 0
    for asset in ("lesions", "radiomics_features", "lesion_slices"):
        assert store.read_lake(asset, ["TS1"]).empty, asset


def test_lits_case_goes_all_the_way_on_its_header_geometry(outcome):
    _, store, _ = outcome
    lesions = store.read_lake("lesions", ["LITS1"])
    assert len(lesions) == 13 and lesions["voxel_count"].sum() == 210
    included = lesions.loc[lesions["included"], "lesion_id"]
    features = store.read_lake("radiomics_features", ["LITS1"])
    assert set(features["lesion_id"]) == set(included) and len(features) == 107 * len(included)
    undefined = features[features["feature_value"].isna()]
    assert undefined["undefined_reason"].notna().all()
    slices = store.read_lake("lesion_slices", ["LITS1"])
    with np.load(store.root / slices.iloc[0]["slices_file"]) as data:
        assert data["slices"].shape == (len(slices), 224, 224)
    assert set(slices["lesion_id"]) == set(included)
