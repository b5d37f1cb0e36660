"""DenseNet-121 training throughput: our full training loop against a bare model step, same device.

"Ours" is the pipeline's own epoch (`metorigin.study.densenet.run_epoch` over `training_loader`): uint8 slices
in memory, MONAI augmentation (zoom, shear, rotation, width shift) drawn per image in loader
workers, uint8 host-to-device copies, bf16 autocast and channels-last on CUDA, class-weighted loss.
"Bare" is the same model, optimiser and `train_step` on random tensors already on the device: the
ceiling that data loading and augmentation can only take away from. Both run in one process on
one device; each is timed after a warm-up (an epoch for ours, whose loader workers then live on
for the whole training, as in the pipeline; a few steps for bare).

    python benchmarks/densenet_throughput.py                 # CUDA when present, else a small CPU run
    python benchmarks/densenet_throughput.py --batch 256 --steps 40 --workers 12   # as measured on an H200
    python benchmarks/densenet_throughput.py --smoke         # the same code on CPU, 32 px, batch 4, 2 steps, 1 thread

`--smoke` checks that both loops run (on the CPU unless --device says otherwise) in seconds; its
numbers say nothing about throughput.

Last line: `ours_vs_bare=<x> ours_images_per_s=<y> bare_images_per_s=<z>` (target ours_vs_bare >= 0.8).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a plain checkout too (GPU machine)

from metorigin.core.study import get_settings  # noqa: E402
from metorigin.study import densenet as dn  # noqa: E402


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def synthetic_slices(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Masked-lesion-like uint8 slices: a bright or dark textured disc on black."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = rng.integers(0, 2, n)
    radius = rng.uniform(0.15, 0.4, n)[:, None, None] * size
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius**2
    texture = rng.integers(60, 200, (n, size, size), dtype=np.uint8)
    return np.where(disc, texture, 0).astype(np.uint8), labels


def ours(settings, images, labels, device, seed: int) -> float:
    model = dn.build_model(device, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    loss_fn = torch.nn.CrossEntropyLoss(weight=dn.class_weights(labels).to(device))
    dataset = dn.SliceDataset(images, labels, dn.augmentation(settings), seed)
    loader = dn.training_loader(dataset, settings, seed, device)
    dn.run_epoch(model, optimizer, loss_fn, loader, device)  # warm-up: allocator, kernel choice, loader workers
    loader.sampler.set_epoch(2)
    _synchronize(device)
    start = time.perf_counter()
    _, seen = dn.run_epoch(model, optimizer, loss_fn, loader, device)
    _synchronize(device)
    return seen / (time.perf_counter() - start)


def bare(settings, labels, steps: int, device, seed: int) -> float:
    model = dn.build_model(device, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    loss_fn = torch.nn.CrossEntropyLoss(weight=dn.class_weights(labels).to(device))
    x = torch.randint(
        0, 256, (settings.batch_size, 1, settings.image_size, settings.image_size), device=device, dtype=torch.uint8
    )  # the same uint8 batch our loader delivers, already on the device
    y = torch.randint(0, 2, (settings.batch_size,), device=device)
    for _ in range(max(3, steps // 5)):
        dn.train_step(model, optimizer, loss_fn, x, y, device)
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        dn.train_step(model, optimizer, loss_fn, x, y, device)
    _synchronize(device)
    return steps * settings.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=None, help="default: 256 on CUDA, 16 on CPU, 4 with --smoke")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed batches per measurement (default: 40 on CUDA, 4 on CPU, 2 with --smoke)",
    )
    parser.add_argument("--size", type=int, default=None, help="default: 224 on CUDA, 96 on CPU, 32 with --smoke")
    parser.add_argument(
        "--workers", type=int, default=None, help="loader workers (default: the paper profile's on CUDA, none on CPU)"
    )
    parser.add_argument("--device", default=None, help="auto, cpu or cuda (default: auto; cpu with --smoke)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's own; 1 with --smoke, where a busy shared machine "
        "makes two spinning threads wait for each other for seconds a step)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a tiny run of the same code, on the CPU by default")
    args = parser.parse_args()
    if args.threads or args.smoke:
        torch.set_num_threads(args.threads or 1)

    device = dn.choose_device(args.device or ("cpu" if args.smoke else "auto"))
    cuda = device.type == "cuda"
    config = "smoke" if args.smoke else "cuda" if cuda else "cpu"
    for name, defaults in {
        "batch": {"cuda": 256, "cpu": 16, "smoke": 4},
        "steps": {"cuda": 40, "cpu": 4, "smoke": 2},
        "size": {"cuda": 224, "cpu": 96, "smoke": 32},
    }.items():
        if getattr(args, name) is None:
            setattr(args, name, defaults[config])
    if args.workers is None:
        args.workers = get_settings("paper").densenet.loader_workers if cuda else 0
    settings = replace(
        get_settings("paper").densenet,
        image_size=args.size,
        batch_size=args.batch,
        loader_workers=args.workers,
        max_train_images_per_epoch=args.steps * args.batch,
    )
    images, labels = synthetic_slices(args.steps * args.batch, args.size, args.seed)
    name = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(
        f"device: {name}; batch {args.batch} at {args.size}x{args.size}, {args.steps} timed steps, "
        f"{args.workers} loader workers, torch {torch.__version__}",
        flush=True,
    )
    bare_rate = bare(settings, labels, args.steps, device, args.seed)
    print(f"bare model step (random tensors on the device): {bare_rate:8.1f} images/s", flush=True)
    ours_rate = ours(settings, images, labels, device, args.seed)
    print(f"our training loop (loader + augmentation):      {ours_rate:8.1f} images/s", flush=True)
    if cuda:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    print(
        f"ours_vs_bare={ours_rate / bare_rate:.3f} ours_images_per_s={ours_rate:.1f} bare_images_per_s={bare_rate:.1f}"
    )


if __name__ == "__main__":
    main()
