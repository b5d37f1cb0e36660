"""The model arms, one module each: the registry everything arm-shaped derives from.

Every module of this package declares one `Arm` (metorigin/study/arm.py) as `ARM`, named as the
module. The study group builds each arm's asset from it; Table 3 (`model_metrics`), the per-lesion
probabilities (`lesion_predictions`) and the dbt sources of the arms' lake tables are generated
from the module names (metorigin/core/arm_sources.py); the code versions, the thresholds of the
evaluation, the model registry, promotion, scoring (new scans and external validation) and the
report's sections read the declarations here. Adding an arm is adding a module
(docs/arms.md). The order is the modules' names, everywhere.
"""

from __future__ import annotations

import importlib

from metorigin.core.arm_sources import arm_module_names
from metorigin.core.errors import MetoriginError
from metorigin.core.package import ARMS_DIR
from metorigin.core.schemas import LAKE_TABLES
from metorigin.core.study import STEP_SETTINGS
from metorigin.study.arm import Arm

RESERVED_INPUTS = {"context", "store", "settings", "feature_store"}  # the arms' step's own parameters


class ArmDeclarationError(MetoriginError):
    """A module of metorigin/arms/ that does not declare its arm as the registry needs."""


def _problems(module: str, arm: object) -> list[str]:
    if not isinstance(arm, Arm):
        return ["it defines no `ARM = Arm(...)` (metorigin/study/arm.py)"]
    problems = [] if arm.name == module else [f"its arm is named {arm.name!r}: name it {module!r}, as the module"]
    tables = set(arm.revisions)
    missing = {arm.metrics_table, arm.predictions_table} - tables
    if missing:
        problems.append(f"`revisions` lacks {', '.join(sorted(missing))} (every table it writes has a revision)")
    if set(arm.descriptions) != tables:
        problems.append("`descriptions` must describe exactly the tables of `revisions`")
    if arm.settings_step not in STEP_SETTINGS:
        problems.append(f"`settings_step` {arm.settings_step!r} is none of {', '.join(STEP_SETTINGS)}")
    if arm.threshold_from[0] not in ("out_of_fold", "validation"):
        problems.append("`threshold_from` must name `out_of_fold` or `validation` rows, never the test patients")
    taken = sorted(tables & set(LAKE_TABLES))
    if taken:
        problems.append(f"{', '.join(taken)} is already a table of the pipeline: name the arm otherwise")
    reserved = sorted(set(arm.reads) & RESERVED_INPUTS)
    if reserved:
        problems.append(f"`reads` names {', '.join(reserved)}, which the step's resources use")
    return problems


def _discover() -> tuple[Arm, ...]:
    arms = []
    for module in arm_module_names(ARMS_DIR):
        arm = getattr(importlib.import_module(f"{__name__}.{module}"), "ARM", None)
        problems = _problems(module, arm)
        if problems:
            raise ArmDeclarationError(
                f"{ARMS_DIR / module}.py: " + "; ".join(problems) + ". Fix: see docs/arms.md for a model arm's module"
            )
        arms.append(arm)
    return tuple(arms)


ARMS: tuple[Arm, ...] = _discover()
BY_NAME: dict[str, Arm] = {arm.name: arm for arm in ARMS}
METRIC_TABLES = tuple(arm.metrics_table for arm in ARMS)
PREDICTION_TABLES = tuple(arm.predictions_table for arm in ARMS)
PROMOTABLE = tuple(arm.name for arm in ARMS if arm.score is not None and arm.scores_new_patients)
