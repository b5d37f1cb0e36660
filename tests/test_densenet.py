"""The DenseNet-121 training loop on CPU with small images: real MONAI network, real augmentation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from metorigin.core.study import get_settings
from metorigin.study import densenet as dn

SMALL = replace(get_settings("quick").densenet, image_size=32, epochs=2, batch_size=8, max_train_images_per_epoch=32)


def _data(n: int = 48, seed: int = 0):
    """Bright discs for class 1, dark ones for class 0: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    disc = (yy - 16) ** 2 + (xx - 16) ** 2 < 64
    labels = rng.integers(0, 2, n)
    brightness = np.where(labels[:, None, None] == 1, 200, 90) + rng.integers(0, 20, (n, 32, 32))
    images = np.where(disc, brightness, 0)  # black surroundings, as the mask leaves them
    return images.astype(np.uint8), labels


def _train(tmp_path, settings, name="ck.pt", seed=1):
    images, labels = _data()
    lesions = np.repeat(np.arange(8), 2)
    return dn.train(images, labels, images[:16], labels[:16], lesions, settings, seed, tmp_path / name)


@pytest.mark.slow
def test_training_loop_runs_logs_each_epoch_and_keeps_the_best_validation_epoch(tmp_path):
    logs = []
    images, labels = _data()
    result = dn.train(
        images,
        labels,
        images[:16],
        labels[:16],
        np.repeat(np.arange(8), 2),
        SMALL,
        1,
        tmp_path / "ck.pt",
        progress=logs.append,
    )
    assert [log.epoch for log in logs] == [1, 2]
    assert all(np.isfinite(log.loss) and log.images_per_s > 0 for log in logs)
    best = max(logs, key=lambda log: log.validation_auc)
    assert result.best_epoch == best.epoch and result.best_validation_auc == best.validation_auc
    assert result.device.type == "cpu" and (tmp_path / "ck.pt").is_file()
    probabilities = dn.predict(result.model, images[:5], result.device)
    assert probabilities.shape == (5,) and ((probabilities >= 0) & (probabilities <= 1)).all()


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    straight = _train(tmp_path, SMALL, "straight.pt")
    first_half = _train(tmp_path, replace(SMALL, epochs=1), "resumed.pt")
    assert first_half.resumed_from_epoch == 0
    resumed = _train(tmp_path, SMALL, "resumed.pt")
    assert resumed.resumed_from_epoch == 1
    assert [h.loss for h in resumed.history] == [h.loss for h in straight.history]
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    # A checkpoint made with another seed (or other data) is not resumed from.
    assert _train(tmp_path, SMALL, "resumed.pt", seed=2).resumed_from_epoch == 0


def test_lesion_score_is_the_mean_of_its_slices_and_slices_are_chosen_by_area():
    scores = dn.lesion_probabilities(np.array(["b", "a", "b", "a", "b"]), np.array([0.2, 0.9, 0.5, 0.7, 0.8]))
    assert scores.to_dict() == pytest.approx({"a": 0.8, "b": 0.5})
    index = pd.DataFrame(
        {"lesion_id": ["a"] * 4 + ["b"], "slice_index": [3, 4, 5, 6, 9], "lesion_area_px": [10, 40, 40, 5, 7]}
    )
    chosen = dn.pick_slices(index, 2)
    assert chosen[["lesion_id", "slice_index"]].values.tolist() == [["a", 4], ["a", 5], ["b", 9]]
    assert len(dn.pick_slices(index, None)) == 5


def test_augmentation_is_drawn_per_epoch_and_image_and_keeps_black_borders():
    images, labels = _data(4)
    dataset = dn.SliceDataset(images, labels, dn.augmentation(SMALL), seed=7)
    first = dataset[0][0]
    assert torch.equal(first, dataset[0][0])  # same key, same draw, whichever worker asks
    assert not torch.equal(first, dataset[4][0])  # key 4 = the same image in epoch 1: a new draw
    assert first.shape == (1, 32, 32) and first.dtype == torch.uint8
    assert not torch.equal(first, dn.SliceDataset(images, labels)[0][0]) and first[0, 0, 0] == 0
    sampler = dn.EpochSampler(10, 4, seed=1)
    epoch_one = list(sampler)
    sampler.set_epoch(2)
    assert len(epoch_one) == 4 and all(10 <= k < 20 for k in epoch_one) and all(20 <= k < 30 for k in sampler)


def test_class_weights_balance_the_loss_and_images_are_resized_once():
    weights = dn.class_weights(np.array([0, 0, 0, 1]))
    assert weights.tolist() == pytest.approx([4 / 6, 2.0])
    resized = dn.resize(np.full((3, 224, 224), 128, np.uint8), 96)
    assert resized.shape == (3, 96, 96) and resized.dtype == np.uint8 and (resized == 128).all()
