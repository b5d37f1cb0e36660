"""Reading model files as data, never as code.

A model folder or a store is often someone else's: an nnU-Net model downloaded or shared between
groups, a store copied from a colleague. A pickle is a program (its GLOBAL and REDUCE opcodes call
any importable function), so `torch.load(..., weights_only=False)` or `joblib.load` on such a file
runs whatever its author wrote. Every model file the platform reads goes through here instead:

- PyTorch checkpoints through PyTorch's restricted unpickler (`weights_only=True`), which rebuilds
  tensors, containers and numbers and refuses any other global, with the few numpy scalar types
  that real checkpoints hold (nnU-Net logs its losses as numpy floats) added by name;
- the classical models (scikit-learn and imbalanced-learn pipelines, XGBoost) as skops files, of
  which only the node kinds and classes in `MODEL_NODES` are accepted, by exact name. skops hands
  an XGBoost booster to XGBoost's own parser as the bytes XGBoost serialised it to (its binary
  JSON), never through pickle.

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
    except Exception as error:  # the restricted loader's refusals, and a damaged or foreign file
        asked = _globals_asked_for(path, allowed) if isinstance(error, pickle.UnpicklingError) else []
        reason = type(error).__name__
    if asked:
        problem = f"{what} asks to call {', '.join(asked[:5])}, and metorigin never runs code from a model file"
    else:
        problem = f"{what} is not a PyTorch zip file of tensors and plain values ({reason})"
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
# What a classical model file of the study's arms may be made of: per kind of skops node (its
# loader), the classes it may name, exactly. Everything the study's pipelines hold is here, and
# nothing that calls a class or function with arguments the file gives: not skops' Reduce,
# ConstructorFromReduce, Function, Method, OperatorFunc or Partial nodes, and, among the objects,
# only estimators that rebuild from their saved state (scikit-learn's FunctionTransformer, which
# skops trusts by default, would call whatever class a type node names). An arm whose models hold
# other classes adds them here.
MODEL_NODES: dict[str, frozenset[str]] = {
    "ObjectNode": frozenset(
        {
            "imblearn.over_sampling._smote.base.SMOTE",
            "imblearn.pipeline.Pipeline",
            "imblearn.under_sampling._prototype_selection._random_under_sampler.RandomUnderSampler",
            "metorigin.study.classifiers.MarginSVM",
            "metorigin.study.classifiers.PlattScaled",
            "sklearn.ensemble._forest.RandomForestClassifier",
            "sklearn.impute._base.SimpleImputer",
            "sklearn.linear_model._logistic.LogisticRegression",
            "sklearn.metrics._dist_metrics.EuclideanDistance64",
            "sklearn.naive_bayes.GaussianNB",
            "sklearn.neighbors._classification.KNeighborsClassifier",
            "sklearn.neighbors._kd_tree.KDTree",
            "sklearn.neighbors._unsupervised.NearestNeighbors",
            "sklearn.preprocessing._data.StandardScaler",
            "sklearn.tree._classes.DecisionTreeClassifier",
            # skops hands the booster to XGBoost's own parser as the bytes XGBoost serialised it to
            "xgboost.core.Booster",
            "xgboost.sklearn.XGBClassifier",
        }
    ),
    "TreeNode": frozenset({"sklearn.tree._tree.Tree"}),
    "NdArrayNode": frozenset({"numpy.ndarray", "numpy.float64", "numpy.int64"}),
    "DTypeNode": frozenset({"numpy.dtype"}),
    "TypeNode": frozenset({"builtins.str", "numpy.int64"}),
    "JsonNode": frozenset(f"builtins.{t}" for t in ("str", "int", "float", "bool", "NoneType")),
    "DictNode": frozenset({"builtins.dict", "collections.OrderedDict"}),
    "ListNode": frozenset({"builtins.list"}),
    "TupleNode": frozenset({"builtins.tuple"}),
    "BytearrayNode": frozenset({"builtins.bytearray"}),
}
PICKLE_FIX = (
    "run the study again on this store (`metorigin run`): it retrains its models into data files, then "
    "promote again what you had promoted (`metorigin models promote`)"
)
OTHER_FIX = "use a model file the study wrote; an arm whose models hold other classes names them in MODEL_NODES"


def save_model_file(model: Any, path: Path) -> None:
    """A classical model as a skops file (what `load_model_file` reads)."""
    import skops.io

    skops.io.dump(model, path)


def load_model_file(path: Path, what: str = "the model file") -> Any:
    """A skops model file, rebuilt only if every node is of a kind and class in MODEL_NODES (nothing
    of the file's choosing is called), then its trees' indices checked (a forged index would make
    scikit-learn read outside its arrays, in compiled code)."""
    import skops.io

    path = Path(path)
    if path.suffix != MODEL_SUFFIX:
        raise UnsafeModelFile(
            path,
            f"{what} is not a skops file but {path.suffix or 'a file without a suffix'} (a joblib pickle, as an "
            "earlier metorigin wrote), and metorigin never unpickles a model",
            PICKLE_FIX,
        )
    try:
        nodes = _nodes(path)
        named = skops.io.get_untrusted_types(file=path)
    except Exception as error:  # a zip of skops' schema or nothing: whatever else it is, it is refused
        raise UnsafeModelFile(path, f"{what} is not a skops model file ({error})", PICKLE_FIX) from None
    refused = sorted(f"{name} ({kind})" for kind, name in nodes if name not in MODEL_NODES.get(kind, ()))
    if refused:
        raise UnsafeModelFile(
            path,
            f"{what} holds {', '.join(refused[:5])}, outside what metorigin rebuilds "
            "(metorigin/core/model_files.py MODEL_NODES)",
            OTHER_FIX,
        )
    model = skops.io.load(path, trusted=named)
    problem = _index_problem(model)
    if problem:
        raise UnsafeModelFile(path, f"{what} holds {problem}", OTHER_FIX)
    return model


def _nodes(path: Path) -> set[tuple[str, str]]:
    """(loader, module.class) of every node of a skops file's schema."""
    import json
    import zipfile

    with zipfile.ZipFile(path) as archive:
        schema = json.loads(archive.read("schema.json"))
    found, stack = set(), [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__loader__" in node:
                found.add((str(node["__loader__"]), f"{node.get('__module__')}.{node.get('__class__')}"))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _index_problem(model: Any, depth: int = 0) -> str | None:
    """A decision tree or KD-tree inside `model` whose stored indices point outside its arrays:
    scikit-learn follows them unchecked, in compiled code."""
    from sklearn.neighbors import KDTree
    from sklearn.tree._tree import Tree

    if isinstance(model, Tree):
        nodes = model.node_count
        left, right, feature = model.children_left, model.children_right, model.feature
        inner = left != -1
        if not (
            ((left == -1) | ((left > 0) & (left < nodes))).all()
            and ((right == -1) | ((right > 0) & (right < nodes))).all()
            and ((feature[inner] >= 0) & (feature[inner] < model.n_features)).all()
        ):
            return "a decision tree whose node or feature indices point outside it"
        return None
    if isinstance(model, KDTree):
        data, order, nodes, _ = model.get_arrays()
        n = len(data)
        if (
            not ((order >= 0) & (order < n)).all()
            or not (
                (nodes["idx_start"] >= 0) & (nodes["idx_start"] <= nodes["idx_end"]) & (nodes["idx_end"] <= n)
            ).all()
        ):
            return "a KD-tree whose indices point outside its data"
        return None
    if depth > 8:
        return None
    if isinstance(model, dict):
        children = list(model.values())
    elif isinstance(model, (list, tuple)):
        children = list(model)
    else:
        children = list(getattr(model, "__dict__", {}).values())
    for child in children:
        if isinstance(child, (str, bytes, int, float, type(None))) or type(child).__module__ == "numpy":
            continue
        problem = _index_problem(child, depth + 1)
        if problem:
            return problem
    return None
