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

from metorigin.core.study import StudySettings

# Data versions from content (cohort_assets.py, scan_integrity) are the point of this module; Dagster
# marks `Output(data_version=...)` beta and would warn on every materialisation.
warnings.filterwarnings("ignore", message="Parameter `data_version`", category=dg.BetaWarning)

# asset -> (revision, the settings step it reads). Bump an asset's revision when a change to its
# code changes what it computes; the dbt models are versioned by dagster-dbt (the SQL's checksum).
REVISIONS: dict[str, tuple[int, str]] = {
    "scan_integrity": (1, "segmentation"),  # the checks themselves: CHECKS_VERSION, in its data version
    "segmentations": (1, "segmentation"),
    "lesions": (1, "lesions"),
    "radiomics_features": (1, "radiomics"),
    "lesion_slices": (1, "slices"),
    "patient_split": (1, "split"),
    "feature_importance": (1, "selection"),
    # 2: nested CV on the training patients, Platt scaling on its out-of-fold probabilities.
    # 3: Platt on every repeat's held-out probability, not on their mean over repeats.
    # 4 (and the other arms' next revision): cards record the training patients, the settings their
    # inputs were made under and the training features' spread, which scoring checks.
    "radiomics_metrics": (4, "radiomics_models"),
    "radiomics_predictions": (4, "radiomics_models"),
    "radiomics_cv_folds": (1, "radiomics_models"),
    "radiomics_cv_predictions": (1, "radiomics_models"),
    "baseline_metrics": (3, "radiomics_models"),  # 2: as radiomics 3; 3: as radiomics 4
    "baseline_predictions": (3, "radiomics_models"),
    # 2: probabilities moved from the class weights' balance to the training prevalence.
    "densenet_metrics": (3, "densenet"),
    "densenet_predictions": (3, "densenet"),
    # 2: the best radiomics model by nested CV; validation rows scored too (their threshold).
    "combined_metrics": (4, "combined"),  # 3: as densenet 2; 4: as radiomics 4
    "combined_predictions": (4, "combined"),
    # The evaluation reads the same settings as the radiomics models (seed, label, models).
    "metric_intervals": (1, "radiomics_models"),
    "model_comparisons": (2, "radiomics_models"),  # 2: flag on a zero-width interval
    "models": (1, "radiomics_models"),  # the registry: a table of the model cards
    "model_promotions": (1, "cohort"),  # reads no setting; ingest materialises it
    "scan_predictions": (1, "cohort"),  # the label classes of its calls; the models it uses by data version
    "permutation_null": (1, "robustness"),
    "split_repeats": (1, "robustness"),
}


def code_version(name: str, study: StudySettings) -> str:
    revision, step = REVISIONS[name]
    return f"{revision}-{study.step_hash(step)}"


def with_code_versions(assets: Iterable, study: StudySettings) -> list:
    """The assets with the code versions of this study (others unchanged)."""

    def versioned(spec: dg.AssetSpec) -> dg.AssetSpec:
        name = spec.key.to_user_string()
        return spec.replace_attributes(code_version=code_version(name, study)) if name in REVISIONS else spec

    return [a.map_asset_specs(versioned) if isinstance(a, dg.AssetsDefinition) else a for a in assets]
