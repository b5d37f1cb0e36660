"""Which device a step computes on: one rule for nnU-Net inference and DenseNet training alike."""

from __future__ import annotations


def choose_device(preference: str = "auto"):
    """`auto` is CUDA when a GPU is visible, else the CPU; anything else is taken as torch spells it.

    torch is imported here, not at module load, so steps without a network never pay for it."""
    import torch

    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)
