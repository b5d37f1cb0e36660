"""A toy model arm, for the test that a new arm is one module (tests/test_wheel.py copies it into
metorigin/arms/ of the sources the wheel is built from, and changes nothing else).

A logistic regression on the patient's tumour burden (the log of the summed volume of its included
lesions) and lesion count (log), fitted, calibrated and scored like the baselines; promotable, so
it scores new scans too (on the lesions of the scan it scores: a toy), and with a report section
of its own: its models' test AUC as a figure.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from metorigin.arms._shared import saved_metrics, score_features, table3_metadata
from metorigin.study.arm import Arm, ArmInputs, ArmOutput, LesionData, ReportFigure, ReportSection
from metorigin.study.radiomics_arm import ArmSpec, fit_radiomics_arm
from metorigin.study.registry import provenance

FEATURES = ["log_burden_ml", "log_lesion_count"]
IDS = ["lesion_id", "scan_id", "patient_id", "label"]


def burden_features(ids: pd.DataFrame, lesions: pd.DataFrame) -> pd.DataFrame:
    """Per lesion, its patient's summed lesion volume and lesion count over these lesions (logs)."""
    frame = ids[IDS].merge(lesions[["lesion_id", "volume_ml"]], on="lesion_id")
    per_patient = frame.groupby("patient_id")["volume_ml"]
    return frame.assign(
        log_burden_ml=np.log(per_patient.transform("sum")), log_lesion_count=np.log(per_patient.transform("count"))
    ).drop(columns="volume_ml")


def train(inputs: ArmInputs) -> ArmOutput:
    """Logistic regression on the patient's tumour burden and lesion count (a toy arm)."""
    study = inputs.study
    lesions = inputs.query("select lesion_id, volume_ml from lesions")
    frame = burden_features(inputs.training_matrix(), lesions)
    settings = replace(study.models, classifiers=("logistic_regression",), resamplers=study.models.resamplers[:1])
    result = fit_radiomics_arm(
        frame,
        inputs.tables["patient_split"],
        FEATURES,
        settings,
        study.label,
        study.seed,
        ArmSpec("burden", "burden_count", True),
    )
    settings_hash = study.step_hash("radiomics_models")
    metrics = saved_metrics(inputs.store, result, settings_hash, provenance(study, "lesions"))
    return ArmOutput(
        metrics=metrics,
        predictions=result.predictions.assign(settings_hash=settings_hash),
        metadata={"burden_metrics": table3_metadata(metrics)},
    )


def features(lesions: LesionData) -> pd.DataFrame:
    return burden_features(lesions.wide.assign(label=None), lesions.lesions)


def score(pipeline: Any, model: Any, lesions: LesionData, component: Callable[[str], pd.Series]) -> pd.Series:
    return score_features(pipeline, model, features(lesions))


def auc_bars(rows: pd.DataFrame, cards: list[dict]) -> list[ReportFigure]:
    """The test AUC of each of the arm's models as bars: enough to show the section is the arm's."""
    fig = Figure(figsize=(4, 2), layout="constrained")
    ax = fig.subplots()
    ax.bar(rows["model"], rows["auc"])
    ax.set(ylabel="test AUC", ylim=(0, 1))
    return [
        ReportFigure("burden_auc", "Burden arm", "Test AUC of the burden arm's models.", fig, rows[["model", "auc"]])
    ]


ARM = Arm(
    name="burden",
    title="Tumour burden and lesion count (toy)",
    asset="burden_model",
    train=train,
    settings_step="radiomics_models",
    revisions={"burden_metrics": 1, "burden_predictions": 1},
    threshold_from=("out_of_fold", "out-of-fold, training patients"),
    descriptions={
        "burden_metrics": "Table 3, the toy burden arm's row",
        "burden_predictions": "per-lesion probabilities of the burden arm",
    },
    reads=("patient_split",),
    score=score,
    features=features,
    report_sections=(ReportSection("burden", "Burden arm", auc_bars),),
)
