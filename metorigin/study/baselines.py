"""What a radiomics model has to beat: the lesion size and lesion count that Table 1 already shows
differ between the classes.

Two baselines, each a logistic regression fitted, calibrated and scored exactly like the radiomics
models (the same nested CV on the training patients, the same resampler, Platt scaling on the
out-of-fold probabilities, the test patients scored once): lesion size (the log of its volume and
its maximum diameter) and the number of lesions its patient has (log). A radiomics model that does
not beat them has learnt size, or burden, and nothing of texture.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from metorigin.core.study import LabelSettings, ModelSettings
from metorigin.study.radiomics_arm import ID_COLUMNS, ArmResult, ArmSpec, fit_radiomics_arm

BASELINES: dict[str, list[str]] = {
    "lesion_size": ["log_volume_ml", "max_diameter_mm"],
    "lesion_count": ["log_patient_lesions"],
}


def baseline_matrix(matrix: pd.DataFrame, lesions: pd.DataFrame) -> pd.DataFrame:
    """The training matrix's lesions with the baselines' features: from `lesions` (volume_ml,
    max_diameter_mm) and the number of the patient's lesions in the matrix."""
    frame = matrix[ID_COLUMNS].merge(lesions[["lesion_id", "volume_ml", "max_diameter_mm"]], on="lesion_id")
    frame["log_volume_ml"] = np.log(frame["volume_ml"])
    frame["log_patient_lesions"] = np.log(frame.groupby("patient_id")["lesion_id"].transform("count"))
    return frame.drop(columns="volume_ml")


def fit_baselines(
    frame: pd.DataFrame, split: pd.DataFrame, settings: ModelSettings, label: LabelSettings, seed: int
) -> list[ArmResult]:
    """Each baseline as one row of Table 3: logistic regression with the study's first resampler."""
    one = replace(settings, classifiers=("logistic_regression",), resamplers=settings.resamplers[:1])
    return [
        fit_radiomics_arm(
            frame[[*ID_COLUMNS, *features]], split, features, one, label, seed, ArmSpec("baseline", name, True)
        )
        for name, features in BASELINES.items()
    ]
