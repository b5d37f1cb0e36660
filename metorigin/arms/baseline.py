"""The baselines: what the radiomics models must beat, lesion size and the patient's lesion count,
each a logistic regression fitted, calibrated and scored exactly like them
(metorigin/study/baselines.py). Never promoted: a size rule is a yardstick, not a model in use."""

from __future__ import annotations

from typing import Any, Callable

import pandas as pd

from metorigin.arms._shared import saved_metrics, score_features
from metorigin.study.arm import Arm, ArmInputs, ArmOutput, LesionData, Markdown
from metorigin.study.baselines import baseline_matrix, fit_baselines
from metorigin.study.registry import provenance
from metorigin.study.tables import table3

LESION_SIZES = "select lesion_id, volume_ml, max_diameter_mm from lesions"


def train(inputs: ArmInputs) -> ArmOutput:
    """What the radiomics models must beat: lesion size and the patient's lesion count, each a
    logistic regression fitted, calibrated and scored exactly like them (metorigin/study/baselines.py)."""
    study = inputs.study
    frame = baseline_matrix(inputs.training_matrix(), inputs.query(LESION_SIZES))
    results = fit_baselines(frame, inputs.tables["patient_split"], study.models, study.label, study.seed)
    settings_hash = study.step_hash("radiomics_models")
    origin = provenance(study, "lesions")
    metrics = pd.concat(
        [saved_metrics(inputs.store, result, settings_hash, origin) for result in results], ignore_index=True
    )
    inputs.log(", ".join(f"{m['model']}: test AUC {m['auc']:.2f}" for _, m in metrics.iterrows()))
    predictions = pd.concat([result.predictions for result in results], ignore_index=True)
    return ArmOutput(
        metrics=metrics,
        predictions=predictions.assign(settings_hash=settings_hash),
        metadata={"baseline_metrics": {"table_3": Markdown(table3(metrics))}},
    )


def features(lesions: LesionData) -> pd.DataFrame:
    """The lesions' size and their patient's lesion count among them, as at training."""
    ids = lesions.wide[["lesion_id", "scan_id", "patient_id"]].assign(label=None)
    return baseline_matrix(ids, lesions.lesions)


def score(pipeline: Any, model: Any, lesions: LesionData, component: Callable[[str], pd.Series]) -> pd.Series:
    return score_features(pipeline, model, features(lesions))


ARM = Arm(
    name="baseline",
    title="Baselines (lesion size, lesion count)",
    asset="baseline_models",
    train=train,
    settings_step="radiomics_models",
    revisions={"baseline_metrics": 4, "baseline_predictions": 4},  # 2, 3, 4: as radiomics 3, 4, 5
    threshold_from=("out_of_fold", "out-of-fold, training patients"),
    descriptions={
        "baseline_metrics": "Table 3, baseline rows: lesion size, lesion count",
        "baseline_predictions": "per-lesion probabilities of the baselines",
    },
    reads=("patient_split",),
    score=score,
    features=features,
    scores_new_patients=False,
)
