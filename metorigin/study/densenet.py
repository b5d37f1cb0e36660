"""DenseNet-121 on single lesion slices: the study's deep-learning arm, trained from scratch.

Only torch, MONAI and numpy here (no Dagster), so the same loop runs in the pipeline, in the tests
and in the GPU benchmark. Every random draw (initial weights, sampling order, augmentation) is a
function of the seed, the epoch and the image, so on CPU an interrupted training resumed from its
checkpoint ends with exactly the weights of one that never stopped, and a rerun repeats them. On
CUDA the draws are the same but cuDNN's backward kernels may sum in another order: weights agree
to rounding, not bit for bit (deterministic kernels would cost speed the GPU profile is for).
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from monai.data import set_track_meta
from monai.networks.nets import DenseNet121
from monai.transforms import RandAffine
from torch.utils.data import DataLoader, Dataset, Sampler

from metorigin.core.devices import choose_device
from metorigin.core.files import atomic_path
from metorigin.core.model_files import load_tensor_file
from metorigin.core.study import DenseNetSettings, protocol_fields
from metorigin.study.evaluation import patient_draws, roc_auc

set_track_meta(False)  # plain tensors through the transforms: MONAI's metadata doubles their cost


def build_model(device: torch.device, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = DenseNet121(spatial_dims=2, in_channels=1, out_channels=2).to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def pick_slices(index: pd.DataFrame, max_per_lesion: int | None) -> pd.DataFrame:
    """All slices, or each lesion's k slices with the largest lesion area (ties: lower slice)."""
    ordered = index.sort_values(["lesion_id", "lesion_area_px", "slice_index"], ascending=[True, False, True])
    chosen = ordered if max_per_lesion is None else ordered.groupby("lesion_id", sort=False).head(max_per_lesion)
    return chosen.sort_values(["lesion_id", "slice_index"]).reset_index(drop=True)


def resize(slices: np.ndarray, size: int, chunk: int = 512) -> np.ndarray:
    """uint8 (n, h, w) -> uint8 (n, size, size), once, up front (not per epoch)."""
    if slices.shape[1:] == (size, size):
        return slices
    out = np.empty((len(slices), size, size), dtype=np.uint8)
    for start in range(0, len(slices), chunk):
        part = torch.from_numpy(slices[start : start + chunk]).unsqueeze(1).float()
        scaled = torch.nn.functional.interpolate(
            part, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out[start : start + chunk] = scaled.squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def augmentation(settings: DenseNetSettings) -> RandAffine:
    """Zoom, shear, rotation and width shift in one affine resampling; black (0) fills the border,
    like the masked-out surroundings of the lesion."""
    return RandAffine(
        prob=1.0,
        rotate_range=(math.radians(settings.rotate_deg),),
        shear_range=(settings.shear, settings.shear),
        translate_range=(0.0, settings.width_shift * settings.image_size),
        scale_range=(settings.zoom, settings.zoom),
        padding_mode="zeros",
        mode="bilinear",
    )


class SliceDataset(Dataset):
    """uint8 slices in memory; uint8 (1, h, w) tensors out, augmented when a transform is given.

    Items are asked for by key `epoch * n + i` (see EpochSampler), and the key seeds that image's
    augmentation: every draw depends on (seed, epoch, image) alone, whichever loader worker makes
    it, so workers can live across epochs and a resumed training repeats the same draws. Images
    travel as uint8 (a quarter of float32's bytes) and become floats on the device.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: RandAffine | None = None, seed: int = 0):
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int):
        i = key % len(self.images)
        x = self.images[i].unsqueeze(0)
        if self.augment is not None:
            self.augment.set_random_state(seed=(self.seed * 1_000_003 + key) % 2**32)
            x = self.augment(x.float()).round_().clamp_(0, 255).to(torch.uint8)
        return x, self.labels[i]


class EpochSampler(Sampler[int]):
    """A seeded order per epoch (set_epoch), capped at `per_epoch` images, as keys epoch * n + i."""

    def __init__(self, n: int, per_epoch: int, seed: int):
        self.n, self.per_epoch, self.seed, self.epoch = n, per_epoch, seed, 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_epoch

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch))
        return iter((self.epoch * self.n + order[: self.per_epoch]).tolist())


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """Inverse class frequency of the training slices: both primaries weigh the same in the loss."""
    counts = np.bincount(labels, minlength=2).astype(float)
    return torch.tensor(len(labels) / (2 * np.maximum(counts, 1)), dtype=torch.float32)


def at_training_prevalence(probability: np.ndarray, train_labels: np.ndarray) -> np.ndarray:
    """Undo the balancing of `class_weights` (Saerens et al., Neural Computation 2002): a network
    trained with inverse-frequency weights estimates P(class) as if both classes were equally common.
    Multiplying its odds by the training slices' odds of the positive class puts its probabilities on
    the training prevalence, where the Platt-scaled radiomics models' are, so the combined model's
    mean averages like with like and 0.5 means the same in every row. The ranking (AUC) is unchanged."""
    return shift_to_prevalence(probability, float(np.mean(train_labels)))


def shift_to_prevalence(probability: np.ndarray, share: float) -> np.ndarray:
    """`at_training_prevalence` with the training slices' positive share given (a model card's)."""
    p = np.clip(np.asarray(probability, dtype=float), 1e-6, 1 - 1e-6)
    odds = p / (1 - p) * share / (1 - share)
    return odds / (1 + odds)


def training_loader(dataset: SliceDataset, settings: DenseNetSettings, seed: int, device: torch.device) -> DataLoader:
    """One loader for the whole training; call `loader.sampler.set_epoch(e)` before each epoch."""
    per_epoch = min(len(dataset), settings.max_train_images_per_epoch or len(dataset))
    workers = settings.loader_workers
    return DataLoader(
        dataset,
        batch_size=settings.batch_size,
        sampler=EpochSampler(len(dataset), per_epoch, seed),
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=per_epoch > settings.batch_size,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
    )


def train_step(model, optimizer, loss_fn, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One optimisation step on a uint8 batch; on CUDA in bf16 autocast with channels-last inputs."""
    x = x.to(device, non_blocking=True).float() / 255.0
    y = y.to(device, non_blocking=True)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        loss = loss_fn(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def run_epoch(model, optimizer, loss_fn, loader: DataLoader, device: torch.device) -> tuple[float, int]:
    """One pass over the loader; returns the mean loss and the images seen. The loss is summed on
    the device and read once, so the GPU never waits for the host inside the epoch."""
    model.train()
    seen, total = 0, torch.zeros((), device=device)
    for x, y in loader:
        total += train_step(model, optimizer, loss_fn, x, y, device) * len(y)
        seen += len(y)
    return float(total) / max(seen, 1), seen


@torch.no_grad()
def predict(model, images: np.ndarray, device: torch.device, batch_size: int = 256) -> np.ndarray:
    """P(class 1) per slice, without augmentation."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start : start + batch_size]).unsqueeze(1).to(device).float().div_(255.0)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x)
        out.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy())
    return np.concatenate(out) if out else np.empty(0, dtype=np.float32)


def lesion_probabilities(lesion_ids: np.ndarray, slice_probabilities: np.ndarray) -> pd.Series:
    """The study's lesion-wise score: the mean of its slices' outputs."""
    return pd.Series(slice_probabilities, index=pd.Index(lesion_ids, name="lesion_id")).groupby(level=0).mean()


@dataclass
class EpochLog:
    epoch: int
    loss: float
    validation_auc: float
    images_per_s: float
    seconds: float
    # The validation AUC's 95% patient-bootstrap interval: a handful of validation patients choose
    # the epoch, and this says how much the choice could owe to which patients they are.
    validation_auc_ci_low: float = math.nan
    validation_auc_ci_high: float = math.nan


VALIDATION_RESAMPLES = 200


def validation_interval(lesions: pd.DataFrame, seed: int) -> tuple[float, float]:
    """95% patient-bootstrap interval of the validation lesions' AUC (patient_id, y_true, probability)."""
    frame = lesions.reset_index(drop=True)
    y, p = frame["y_true"].to_numpy(), frame["probability"].to_numpy()
    draws = np.array([roc_auc(y[rows], p[rows]) for rows, _ in patient_draws(frame, VALIDATION_RESAMPLES, seed)])
    draws = draws[np.isfinite(draws)]
    return tuple(float(v) for v in np.percentile(draws, [2.5, 97.5])) if len(draws) else (math.nan, math.nan)


@dataclass
class Checkpoint:
    """Everything a resumed training needs; written atomically after every epoch."""

    fingerprint: str
    epoch: int = 0
    model: dict = field(default_factory=dict)
    optimizer: dict = field(default_factory=dict)
    best_state: dict | None = None
    best_auc: float = -math.inf
    best_epoch: int = 0
    history: list = field(default_factory=list)

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            torch.save(asdict(self), tmp)

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> "Checkpoint | None":
        """The checkpoint, if it was made for the same data and settings (the epoch count aside)."""
        if not path.is_file():
            return None
        saved = load_tensor_file(
            path, "the DenseNet resume file", f"delete {path}: the DenseNet then trains from its first epoch"
        )
        return cls(**saved) if saved.get("fingerprint") == fingerprint else None


def model_params(settings: DenseNetSettings) -> dict:
    """The settings that shape the model; how many processes feed it, or which device, do not."""
    return protocol_fields(settings)


def fingerprint(
    train_images: np.ndarray, train_labels: np.ndarray, val_images: np.ndarray, settings: DenseNetSettings, seed: int
) -> str:
    """Same data, settings and seed -> resumable; more epochs is a continuation, not a new training."""
    params = sorted((k, v) for k, v in model_params(settings).items() if k != "epochs")
    digest = hashlib.sha256(repr((params, seed)).encode())
    for array in (train_images, train_labels, val_images):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@dataclass
class TrainingResult:
    model: torch.nn.Module  # with the best-validation weights loaded
    best_epoch: int
    best_validation_auc: float
    history: list[EpochLog]
    device: torch.device
    resumed_from_epoch: int


def train(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    val_lesions: np.ndarray,
    settings: DenseNetSettings,
    seed: int,
    checkpoint_path: Path,
    progress: Callable[[EpochLog], None] = lambda log: None,
    val_patients: np.ndarray | None = None,
) -> TrainingResult:
    """Train from scratch (or resume), choosing the epoch with the best validation-lesion AUC (with
    its patient-bootstrap interval when `val_patients`, each validation slice's patient, is given)."""
    device = choose_device(settings.device)
    model = build_model(device, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights(train_labels).to(device))
    loader = training_loader(
        SliceDataset(train_images, train_labels, augmentation(settings), seed), settings, seed, device
    )
    lesion_labels = pd.Series(val_labels, index=val_lesions).groupby(level=0).first()
    lesion_patients = (
        None if val_patients is None else pd.Series(val_patients, index=val_lesions).groupby(level=0).first()
    )

    key = fingerprint(train_images, train_labels, val_images, settings, seed)
    state = Checkpoint.load(checkpoint_path, key)
    if state and 0 < state.epoch <= settings.epochs:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
    else:  # none, another training's, or one that ran longer than asked (its best epoch may lie beyond)
        state = Checkpoint(key)
    resumed_from = state.epoch

    for epoch in range(state.epoch + 1, settings.epochs + 1):
        start = time.perf_counter()
        loader.sampler.set_epoch(epoch)
        loss, seen = run_epoch(model, optimizer, loss_fn, loader, device)
        train_seconds = time.perf_counter() - start
        per_lesion = lesion_probabilities(val_lesions, predict(model, val_images, device))
        auc = roc_auc(lesion_labels.loc[per_lesion.index].to_numpy(), per_lesion.to_numpy())
        interval = (math.nan, math.nan)
        if lesion_patients is not None:
            scored = pd.DataFrame(
                {
                    "patient_id": lesion_patients.loc[per_lesion.index].to_numpy(),
                    "y_true": lesion_labels.loc[per_lesion.index].to_numpy(),
                    "probability": per_lesion.to_numpy(),
                }
            )
            interval = validation_interval(scored, seed + epoch)
        log = EpochLog(epoch, loss, auc, seen / train_seconds, time.perf_counter() - start, *interval)
        if np.isfinite(auc) and auc > state.best_auc or state.best_state is None:
            state.best_auc, state.best_epoch = (auc if np.isfinite(auc) else -math.inf), epoch
            state.best_state = copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})
        state.epoch, state.history = epoch, [*state.history, asdict(log)]
        state.model = {k: v.cpu() for k, v in model.state_dict().items()}
        state.optimizer = optimizer.state_dict()
        state.save(checkpoint_path)
        progress(log)

    model.load_state_dict(state.best_state)
    return TrainingResult(
        model, state.best_epoch, state.best_auc, [EpochLog(**h) for h in state.history], device, resumed_from
    )
