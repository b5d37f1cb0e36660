"""Model files are read as data: a planted pickle in any checkpoint the platform loads runs nothing.

Each test writes a real malicious pickle (its `__reduce__` calls `os.system` to create a file) where
a model file goes, and asserts the refusal names the file and that the file was never created.
The nnU-Net model folder's cases are in tests/test_nnunet.py (they need its tiny model).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from metorigin.core.errors import StudyFileError
from metorigin.core.model_files import UnsafeModelFile, load_tensor_file
from metorigin.core.study_file import load_study
from metorigin.study import densenet as dn


class Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path) -> Path:
    """A torch.save file whose weights are the payload, as a forged checkpoint would be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"network_weights": Payload(marker), "epoch": 1}, path)
    return path


def test_a_tensor_file_with_numpy_numbers_loads_and_a_payload_is_refused_by_name(tmp_path):
    """Also the pin of the allow-list's private numpy name (model_files.py): were numpy to move its
    scalar reconstructor, this file's numpy float would be refused here."""
    saved = {"weights": torch.ones(3), "loss": np.float64(0.25), "axes": (0, 1), "device": torch.device("cpu")}
    torch.save(saved, tmp_path / "ok.pt")
    loaded = load_tensor_file(tmp_path / "ok.pt", "the test file")
    assert torch.equal(loaded["weights"], saved["weights"]) and loaded["loss"] == 0.25 and loaded["axes"] == (0, 1)

    marker = tmp_path / "ran"
    with pytest.raises(UnsafeModelFile, match=r"evil\.pt: the test file asks to call posix\.system, and metorigin"):
        load_tensor_file(plant(tmp_path / "evil.pt", marker), "the test file")
    assert not marker.exists()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UnsafeModelFile, match=r"junk\.pt: the test file is not a PyTorch file"):
        load_tensor_file(tmp_path / "junk.pt", "the test file")


def test_a_planted_densenet_resume_file_runs_nothing_and_says_to_delete_it(tmp_path):
    marker = tmp_path / "ran"
    resume = plant(tmp_path / "checkpoint.pt", marker)
    with pytest.raises(UnsafeModelFile, match=rf"{resume}: the DenseNet resume file asks to call posix\.system"):
        dn.Checkpoint.load(resume, "any")
    assert not marker.exists()
    with pytest.raises(UnsafeModelFile, match=rf"Fix: delete {resume}: the DenseNet then trains from its first"):
        dn.Checkpoint.load(resume, "any")


def test_a_planted_densenet_model_file_runs_nothing(tmp_path):
    from metorigin.arms.densenet import read_network

    marker = tmp_path / "ran"
    with pytest.raises(UnsafeModelFile, match=r"the DenseNet model file asks to call posix\.system"):
        read_network(plant(tmp_path / "densenet-x.pt", marker))
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../../../etc/passwd", "/tmp/evil.pth", "..", "fold_1/checkpoint_final.pth"])
def test_an_nnunet_checkpoint_outside_its_fold_folder_is_refused_at_load(tmp_path, name):
    study = tmp_path / "study.yaml"
    study.write_text(f"base: quick\nsegmentation: {{method: nnunet, nnunet_checkpoint: '{name}'}}\n")
    refused = r"segmentation\.nnunet_checkpoint: .* is not a file name inside the model.s fold_N/ folders"
    with pytest.raises(StudyFileError, match=refused):
        load_study(study)
