"""nnU-Net v2 segmentation through the real predictor, with a tiny model folder built as nnU-Net does."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata

import dagster as dg
import numpy as np
import pytest
import SimpleITK as sitk

from metorigin.core.config import RunConfig
from metorigin.core.errors import ScanProcessingError
from metorigin.core.store import Store
from metorigin.definitions import build_definitions
from metorigin.imaging.nnunet import nnunet_segmentation
from metorigin.runtime.runner import run_selection
from tests.nnunet_model import build_tiny_model
from tests.test_model_files import plant

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tiny_cohort, tmp_path_factory):
    cases = [
        (tiny_cohort / "images" / f"{s}.nii.gz", tiny_cohort / "masks" / f"{s}.nii.gz") for s in ("S0003", "S0004")
    ]
    # nnU-Net forks worker pools; a fork of this long-lived test process (worker pools and library
    # threads of earlier tests running) once hung at the pool's exit, so it builds in a fresh process.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
        return fresh.submit(build_tiny_model, tmp_path_factory.mktemp("nnunet"), cases).result()


def test_predictor_output_lands_on_the_image_grid(tiny_model, tiny_cohort):
    image = sitk.ReadImage(str(tiny_cohort / "images" / "S0005.nii.gz"))
    result = nnunet_segmentation(image, tiny_model, (0,), "checkpoint_final.pth", "S0005")
    labels = sitk.GetArrayFromImage(result.labels)
    assert result.labels.GetSize() == image.GetSize() and result.labels.GetOrigin() == image.GetOrigin()
    assert result.method == "nnunet" and result.model_id.startswith(f"nnunetv2:{tiny_model.name}:folds=0:")
    assert np.all(labels == 1)  # the tiny model's output layer says "liver" everywhere
    again = nnunet_segmentation(image, tiny_model, (0,), "checkpoint_final.pth", "S0005")
    assert again.model_id == result.model_id and np.array_equal(sitk.GetArrayFromImage(again.labels), labels)


def test_incomplete_model_folder_is_a_clear_error(tiny_model, tmp_path, tiny_cohort):
    image = sitk.ReadImage(str(tiny_cohort / "images" / "S0005.nii.gz"))
    with pytest.raises(ScanProcessingError, match=r"lacks fold_1/checkpoint_final.pth.*Fix: point --nnunet-model"):
        nnunet_segmentation(image, tiny_model, (1,), "checkpoint_final.pth", "S0005")


def test_pipeline_segments_with_nnunet_when_a_model_is_configured(tiny_model, cohort, tmp_path, monkeypatch):
    defs = build_definitions(RunConfig(cohort=str(cohort), store=str(tmp_path / "store"), nnunet_model=str(tiny_model)))
    with dg.instance_for_test() as instance:
        report = run_selection(
            defs,
            instance,
            selection="key:patients or key:scans or key:scan_integrity or key:segmentations or key:lesions",
            progress=lambda _: None,
        )
    assert report.ok, report.step_failures
    store = Store(tmp_path / "store")
    seg = store.read_lake("segmentations").set_index("scan_id")
    assert set(seg["method"]) == {"nnunet"} and seg["model_id"].str.contains(tiny_model.name).all()
    scans = store.read_lake("scans").set_index("scan_id")
    for scan_id, row in seg.iterrows():
        voxels = scans.loc[scan_id, ["size_x", "size_y", "size_z"]].prod()
        assert row["liver_volume_ml"] == pytest.approx(voxels * row["voxel_volume_ml"])
        assert row["lesion_volume_ml"] == 0
    assert store.read_lake("lesions").empty


def test_a_planted_checkpoint_or_a_foreign_network_class_runs_nothing(tiny_model, tiny_cohort, tmp_path):
    """A shared model folder is someone else's: its checkpoint is read as tensors, and the classes
    plans.json names are held to nnU-Net's architectures and torch.nn (imaging/nnunet.py)."""
    image = sitk.ReadImage(str(tiny_cohort / "images" / "S0005.nii.gz"))
    marker = tmp_path / "ran"
    forged = tmp_path / "forged" / tiny_model.name
    shutil.copytree(tiny_model, forged)
    plant(forged / "fold_0" / "checkpoint_final.pth", marker)
    with pytest.raises(ScanProcessingError, match=r"checkpoint_final\.pth: the nnU-Net checkpoint asks to call posix"):
        nnunet_segmentation(image, forged, (0,), "checkpoint_final.pth", "S0005")
    assert not marker.exists()

    # A name that starts like torch's layers but leads to os.system (pydoc.locate follows attributes),
    # called with the plans' own arguments; and a module whose import alone does something.
    for key, name, extra in [
        ("nonlin", "torch.nn.functional.torch.os.system", {"nonlin_kwargs": {"command": f"touch {marker}"}}),
        ("conv_op", "this", {}),
    ]:
        foreign = tmp_path / key / tiny_model.name
        shutil.copytree(tiny_model, foreign)
        plans = json.loads((foreign / "plans.json").read_text())
        plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"].update({key: name, **extra})
        (foreign / "plans.json").write_text(json.dumps(plans))
        with pytest.raises(ScanProcessingError, match=rf"plans\.json: its architecture names arch_kwargs '{name}'"):
            nnunet_segmentation(image, foreign, (0,), "checkpoint_final.pth", "S0005")
    assert not marker.exists()


def test_the_nnunet_version_whose_model_loading_metorigin_rebuilds():
    """imaging/nnunet.py `load_predictor` is nnU-Net 2.8's `initialize_from_trained_model_folder`
    with safe loading: another nnU-Net version may load differently, so read its method and update
    ours (and this pin) together."""
    assert metadata.version("nnunetv2").startswith("2.8."), metadata.version("nnunetv2")
