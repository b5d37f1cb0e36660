"""Model files are read as data: a planted pickle in any model file the platform loads runs nothing.

Each test writes a real malicious pickle (its `__reduce__` calls `os.system` to create a file) where
a model file goes, and asserts the refusal names the file and that the file was never created.
The nnU-Net model folder's cases are in tests/test_nnunet.py (they need its tiny model).
"""

from __future__ import annotations

import os
from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io
import torch

from metorigin.core.errors import StudyFileError
from metorigin.core.model_files import UnsafeModelFile, load_model_file, load_tensor_file
from metorigin.core.study_file import load_study
from metorigin.study import densenet as dn
from metorigin.study.classifiers import CLASSIFIERS, build_pipeline, platt_scale
from metorigin.study.registry import save_model
from metorigin.study.scoring import RegisteredModel, ScoringRefused, file_sha256, load


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
    with pytest.raises(UnsafeModelFile, match=r"junk\.pt: the test file is not a PyTorch zip file"):
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


class Stranger:
    """A class no arm's model holds: skops would rebuild it only if told to trust it."""

    def __init__(self):
        self.value = 1


def test_every_classifier_round_trips_as_data_and_no_pickle_or_stranger_class_is_read(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] + rng.normal(size=60) > 0).astype(int)
    for spec in CLASSIFIERS:  # every class the study's models hold is in the allow-list
        fitted = build_pipeline(spec, "smote", 1).fit(x, y)
        model = platt_scale(fitted, fitted.predict_proba(x)[:, 1], y)
        path = save_model(tmp_path / "models", spec.name, model, {})
        assert path.suffix == ".skops"
        assert np.array_equal(load_model_file(path).predict_proba(x), model.predict_proba(x)), spec.name

    marker = tmp_path / "ran"
    joblib.dump(Payload(marker), tmp_path / "old.joblib")
    pickled = r"old\.joblib: the model file is not a skops file but \.joblib .* never unpickles a model"
    with pytest.raises(UnsafeModelFile, match=pickled):
        load_model_file(tmp_path / "old.joblib")
    disguised = tmp_path / "disguised.skops"
    joblib.dump(Payload(marker), disguised)
    with pytest.raises(UnsafeModelFile, match=r"disguised\.skops: the model file is not a skops model file"):
        load_model_file(disguised)
    skops.io.dump(Stranger(), tmp_path / "stranger.skops")
    with pytest.raises(UnsafeModelFile, match=r"holds tests\.test_model_files\.Stranger \(ObjectNode\), outside what"):
        load_model_file(tmp_path / "stranger.skops")
    assert not marker.exists()


def test_a_forged_registry_cannot_make_scoring_unpickle_a_planted_file(tmp_path):
    """A registry row whose sha256 matches the planted file (a store someone else wrote)."""
    marker = tmp_path / "ran"
    for name in ("artifacts/models/radiomics/knn-1.joblib", "artifacts/models/radiomics/knn-1.skops"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(Payload(marker), tmp_path / name)
        forged = RegisteredModel("knn-1", "radiomics", "knn", name, file_sha256(tmp_path / name), {})
        with pytest.raises(ScoringRefused, match=rf"model knn-1: {tmp_path / name}: the model file is"):
            load(tmp_path, forged)
    assert not marker.exists()


def test_a_forged_model_file_path_never_leaves_the_store_s_models_folder(tmp_path):
    (tmp_path / "store" / "artifacts" / "models" / "radiomics").mkdir(parents=True)
    outside = tmp_path / "elsewhere.skops"
    skops.io.dump({"a": 1}, outside)
    link = tmp_path / "store" / "artifacts" / "models" / "radiomics" / "linked.skops"
    link.symlink_to(outside)
    for model_file in ("../elsewhere.skops", str(outside), "artifacts/models/../../elsewhere.skops", str(link)):
        forged = RegisteredModel("m-1", "radiomics", "m", model_file, file_sha256(outside), {})
        with pytest.raises(ScoringRefused, match=r"model m-1: its model_file .* lies outside the store's artifacts"):
            load(tmp_path / "store", forged)


def test_a_tree_with_forged_indices_or_a_transformer_that_calls_a_class_is_refused(tmp_path):
    """Files of classes that skops or the study trusts, made to do harm: a decision tree whose root
    points far outside its nodes (scikit-learn would read outside its arrays: a crash or worse),
    and scikit-learn's FunctionTransformer set to call XGBoost's Booster on a path of the file's
    choosing (a read outside the store)."""
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.tree import DecisionTreeClassifier
    from xgboost.core import Booster

    x = np.random.default_rng(0).normal(size=(40, 3))
    tree = DecisionTreeClassifier(max_depth=2, random_state=0).fit(x, (x[:, 0] > 0).astype(int))
    state = tree.tree_.__getstate__()
    state["nodes"] = state["nodes"].copy()
    state["nodes"]["left_child"][0] = 10**8
    tree.tree_.__setstate__(state)
    skops.io.dump(tree, tmp_path / "tree.skops")
    with pytest.raises(UnsafeModelFile, match=r"a decision tree whose node or feature indices point outside it"):
        load_model_file(tmp_path / "tree.skops")

    caller = FunctionTransformer(func=Booster, kw_args={"model_file": "/etc/hostname"})
    skops.io.dump(caller, tmp_path / "caller.skops")
    with pytest.raises(UnsafeModelFile, match=r"sklearn\.preprocessing\._function_transformer\.FunctionTransformer"):
        load_model_file(tmp_path / "caller.skops")
