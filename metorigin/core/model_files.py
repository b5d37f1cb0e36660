"""Reading model files as data, never as code.

A model folder or a store is often someone else's: an nnU-Net model downloaded or shared between
groups, a store copied from a colleague. A pickle is a program (its GLOBAL and REDUCE opcodes call
any importable function), so `torch.load(..., weights_only=False)` or `joblib.load` on such a file
runs whatever its author wrote. Every model file the platform reads goes through here instead:

- PyTorch checkpoints through PyTorch's restricted unpickler (`weights_only=True`), which rebuilds
  tensors, containers and numbers and refuses any other global, with the few numpy scalar types
  that real checkpoints hold (nnU-Net logs its losses as numpy floats) added by name;
- the classical models (scikit-learn and imbalanced-learn pipelines, XGBoost) as skops files,
  whose loader builds only the classes it is told to trust: `TRUSTED_CLASSES`, by exact name.
  skops hands an XGBoost booster to XGBoost's own parser as the bytes XGBoost serialised it to
  (its binary JSON), never through pickle.

Files written by an earlier metorigin with joblib (pickles) are refused, never read: a re-run of
the study retrains its models into skops files (the same data, features, parameters and seed give
the same models).
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


MODEL_SUFFIX = ".skops"
# Every class a classical model file of the study's arms holds, besides those skops trusts itself
# (scikit-learn's estimators, numpy arrays, builtins). A class named here is rebuilt from its saved
# attributes, so only classes whose rebuilding runs no code of the file's choosing belong here. An
# arm whose models hold other classes adds their names.
TRUSTED_CLASSES = frozenset(
    {
        "imblearn.pipeline.Pipeline",
        "imblearn.over_sampling._smote.base.SMOTE",
        "imblearn.under_sampling._prototype_selection._random_under_sampler.RandomUnderSampler",
        "metorigin.study.classifiers.MarginSVM",
        "metorigin.study.classifiers.PlattScaled",
        "numpy.dtype",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.tree._tree.Tree",
        "xgboost.core.Booster",
        "xgboost.sklearn.XGBClassifier",
    }
)
PICKLE_FIX = (
    "run the study again on this store (`metorigin run`): it retrains its models into data files, then "
    "promote again what you had promoted (`metorigin models promote`)"
)


def save_model_file(model: Any, path: Path) -> None:
    """A classical model as a skops file (what `load_model_file` reads)."""
    import skops.io

    skops.io.dump(model, path)


def load_model_file(path: Path, what: str = "the model file") -> Any:
    """A skops model file, rebuilt only if every class it names is trusted (nothing else runs)."""
    import skops.io

    path = Path(path)
    if path.suffix != MODEL_SUFFIX:
        raise UnsafeModelFile(
            path,
            f"{what} is a pickle (written by an earlier metorigin), and metorigin never unpickles a model",
            PICKLE_FIX,
        )
    try:
        named = skops.io.get_untrusted_types(file=path)
    except Exception as error:  # a zip of skops' schema or nothing: whatever else it is, it is refused
        raise UnsafeModelFile(path, f"{what} is not a skops model file ({error})", PICKLE_FIX) from None
    refused = sorted(set(named) - TRUSTED_CLASSES)
    if refused:
        raise UnsafeModelFile(
            path,
            f"{what} holds {', '.join(refused[:5])}, outside the classes metorigin rebuilds "
            "(metorigin/core/model_files.py TRUSTED_CLASSES)",
            "use a model file the study wrote; an arm whose models hold other classes names them in TRUSTED_CLASSES",
        )
    return skops.io.load(path, trusted=named)
