"""Reading model files as data, never as code.

A model folder or a store is often someone else's: an nnU-Net model downloaded or shared between
groups, a store copied from a colleague. A pickle is a program (its GLOBAL and REDUCE opcodes call
any importable function), so `torch.load(..., weights_only=False)` or `joblib.load` on such a file
runs whatever its author wrote. Every checkpoint the platform reads goes through here instead:
PyTorch's restricted unpickler (`weights_only=True`), which rebuilds tensors, containers and
numbers and refuses any other global, with the few numpy scalar types that real checkpoints hold
(nnU-Net logs its losses as numpy floats) added by name.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from metorigin.core.errors import MetoriginError


class UnsafeModelFile(MetoriginError):
    """A model file that asks to run code (or is not a model file at all); nothing of it was used."""

    def __init__(self, path: Path, problem: str, fix: str):
        self.path, self.problem, self.fix = Path(path), problem, fix
        super().__init__(f"{path}: {problem}. Fix: {fix}")


def _numpy_scalars() -> list:
    """What a pickled numpy scalar needs: the reconstructor, `dtype` and the dtype classes of numbers.
    Arrays of objects are not among them: an `object` dtype is refused like any other global."""
    import numpy as np

    dtypes = [np.dtypes.Float64DType, np.dtypes.Float32DType, np.dtypes.Float16DType, np.dtypes.BoolDType]
    dtypes += [np.dtypes.Int64DType, np.dtypes.Int32DType, np.dtypes.Int16DType, np.dtypes.Int8DType]
    dtypes += [np.dtypes.UInt64DType, np.dtypes.UInt32DType, np.dtypes.UInt16DType, np.dtypes.UInt8DType]
    scalar = np._core.multiarray.scalar  # no public name; tests/test_model_files.py fails if it moves
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]  # numpy 1.x's name too


GENERIC_FIX = (
    "use a file saved with torch.save of tensors and plain values (state dicts, as nnU-Net and metorigin "
    "write them); if you made this file yourself, load it where you trust it and re-save its state dict"
)


def load_tensor_file(path: Path, what: str, fix: str = GENERIC_FIX) -> Any:
    """A `torch.save` file of tensors, containers and numbers, read on the CPU without running code.
    `what` names the file's role in the message ("the nnU-Net checkpoint", "the DenseNet resume file")."""
    import torch

    allowed = _numpy_scalars()
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        asked = _globals_asked_for(path, allowed)
    if asked:
        problem = f"{what} asks to call {', '.join(asked[:5])}, and metorigin never runs code from a model file"
    else:
        problem = f"{what} is not a PyTorch file of tensors and plain values"
    raise UnsafeModelFile(path, problem, fix)


def _globals_asked_for(path: Path, allowed: list) -> list[str]:
    """The functions and classes a refused file names (read from its opcodes, nothing called)."""
    import torch

    names = {f"{obj.__module__}.{obj.__qualname__}" for obj in allowed if not isinstance(obj, tuple)}
    try:
        return [name for name in torch.serialization.get_unsafe_globals_in_checkpoint(path) if name not in names]
    except (ValueError, pickle.UnpicklingError, RuntimeError, OSError):
        return []  # not a torch.save file at all
