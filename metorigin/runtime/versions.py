"""Code versions of the Python assets: the revision of the code that computes each, plus the hash
of the study settings it reads (metorigin/core/study.py `STEP_SETTINGS`).

Dagster calls an asset stale when its code version or an input's data version changed since it
was materialised, and `metorigin run` (runtime/runner.py), the sensor and automation
recompute only what is stale. So a changed radiomics setting re-extracts features but does not
re-segment, and changed code re-runs only the assets whose revision was bumped.
"""

from __future__ import annotations

import warnings
from typing import Iterable

import dagster as dg

from metorigin.arms import ARMS
from metorigin.core.study import StudySettings

# Data versions from content (cohort_assets.py, scan_integrity) are the point of this module; Dagster
# marks `Output(data_version=...)` beta and would warn on every materialisation.
warnings.filterwarnings("ignore", message="Parameter `data_version`", category=dg.BetaWarning)

# asset -> (revision, the settings step it reads). Bump an asset's revision when a change to its
# code changes what it computes; the dbt models are versioned by dagster-dbt (the SQL's checksum),
# and each model arm declares the revisions of its own tables (metorigin/arms/).
REVISIONS: dict[str, tuple[int, str]] = {
    "scan_integrity": (1, "segmentation"),  # the checks themselves: CHECKS_VERSION, in its data version
    "segmentations": (1, "segmentation"),
    "lesions": (1, "lesions"),
    "radiomics_features": (2, "radiomics"),  # 2: shape features of a lesion one voxel thick are NaN
    "lesion_slices": (1, "slices"),
    "patient_split": (1, "split"),
    "feature_importance": (1, "selection"),
    # The evaluation reads the same settings as the radiomics models (seed, label, models).
    "metric_intervals": (1, "radiomics_models"),
    "model_comparisons": (2, "radiomics_models"),  # 2: flag on a zero-width interval
    "models": (1, "radiomics_models"),  # the registry: a table of the model cards
    "model_promotions": (1, "cohort"),  # reads no setting; ingest materialises it
    "scan_predictions": (1, "cohort"),  # the label classes of its calls; the models it uses by data version
    "permutation_null": (1, "robustness"),
    "split_repeats": (1, "robustness"),
} | {table: (revision, arm.settings_step) for arm in ARMS for table, revision in arm.revisions.items()}


def code_version(name: str, study: StudySettings) -> str:
    revision, step = REVISIONS[name]
    return f"{revision}-{study.step_hash(step)}"


def with_code_versions(assets: Iterable, study: StudySettings) -> list:
    """The assets with the code versions of this study (others unchanged)."""

    def versioned(spec: dg.AssetSpec) -> dg.AssetSpec:
        name = spec.key.to_user_string()
        return spec.replace_attributes(code_version=code_version(name, study)) if name in REVISIONS else spec

    return [a.map_asset_specs(versioned) if isinstance(a, dg.AssetsDefinition) else a for a in assets]
