"""Which patients train, validate and test: one split, by patient, shared by both arms of the study.

Lesions of one patient share the patient's scanner noise, enhancement and biology; splitting by
lesion would let a model recognise the patient instead of the primary. So the unit of every split
here is the patient, and the test patients are the same for the radiomics models and the DenseNet.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from metorigin.core.study import SplitSettings

TRAIN, VALIDATION, TEST = "train", "validation", "test"


def split_patients(patients: pd.DataFrame, settings: SplitSettings, seed: int) -> pd.DataFrame:
    """`patients` has one row per patient with `patient_id` and `label`; returns them with `set`.

    Test: `test_patients_per_class` per class (at most half of a class, so a small cohort still
    trains on both), drawn with the seed. Validation (the DenseNet's checkpoint choice): a
    `validation_fraction` of all patients from the rest, one of each class whenever the class has
    two patients left after the test draw. The radiomics models train on train + validation.
    """
    frame = _one_row_per_patient(patients)
    rng = np.random.default_rng(seed)
    sets = pd.Series(TRAIN, index=frame.index)
    n_validation = max(int(round(settings.validation_fraction * len(frame))), frame["label"].nunique())
    for label, members in frame.groupby("label").groups.items():
        order = rng.permutation(np.asarray(members))
        n_test = min(settings.test_patients_per_class, len(order) // 2)
        sets[order[:n_test]] = TEST
        # One validation patient per class now; the rest of the validation share is drawn below.
        if len(order) - n_test >= 2:
            sets[order[n_test]] = VALIDATION
    remaining = np.flatnonzero((sets == TRAIN).to_numpy())
    extra = max(0, n_validation - int((sets == VALIDATION).sum()))
    sets[rng.permutation(remaining)[:extra]] = VALIDATION
    return frame.assign(set=sets.to_numpy())


def extend_split(assigned: dict[str, str], patients: pd.DataFrame, settings: SplitSettings, seed: int) -> pd.DataFrame:
    """The split carried over to a changed cohort: a patient never changes set.

    `assigned` holds every patient this study ever assigned (those who left and came back too).
    They keep their set; a new patient trains, or validates with probability
    `validation_fraction`, drawn from a generator seeded by the study seed and the patient id (the
    same arrivals get the same sets, in any order), and the first new patient of a class that has no
    validation patient validates. The test set never grows: the held-out patients stay those chosen
    before any model was fitted. A test set left without a class cannot be carried over: the caller
    draws a new split (`split_patients`) and says so.
    """
    frame = _one_row_per_patient(patients)
    sets = {}
    for patient_id in frame["patient_id"]:
        if patient_id in assigned:
            sets[patient_id] = assigned[patient_id]
            continue
        digest = int(hashlib.sha256(patient_id.encode()).hexdigest()[:16], 16)
        draw = np.random.default_rng([seed, digest]).random()
        sets[patient_id] = VALIDATION if draw < settings.validation_fraction else TRAIN
    split = frame.assign(set=frame["patient_id"].map(sets))
    for _, members in split.groupby("label"):
        new = members[~members["patient_id"].isin(list(assigned)) & (members["set"] == TRAIN)]
        if not (members["set"] == VALIDATION).any() and len(new):
            split.loc[new.index[0], "set"] = VALIDATION
    return split


def holds_out_every_class(assigned: dict[str, str], patients: pd.DataFrame) -> bool:
    """Whether the patients the stored split holds out still include one of each class."""
    frame = _one_row_per_patient(patients)
    held_out = frame[frame["patient_id"].map(assigned).eq(TEST)]
    return held_out["label"].nunique() == frame["label"].nunique()


def _one_row_per_patient(patients: pd.DataFrame) -> pd.DataFrame:
    frame = patients[["patient_id", "label"]].drop_duplicates().sort_values("patient_id").reset_index(drop=True)
    if frame["patient_id"].duplicated().any():
        raise ValueError("a patient has two labels in the training matrix; fix the label column in patients.csv")
    return frame


def training_patients(split: pd.DataFrame) -> set[str]:
    """The radiomics models learn from everyone who is not a test patient."""
    return set(split.loc[split["set"] != TEST, "patient_id"])


def test_patients(split: pd.DataFrame) -> set[str]:
    return set(split.loc[split["set"] == TEST, "patient_id"])
