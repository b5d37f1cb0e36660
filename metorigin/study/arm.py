"""What a model arm declares: the contract between one arm's module (metorigin/arms/) and the
platform that trains, publishes, evaluates, registers, scores and reports it.

An arm is the radiomics classifiers, the DenseNet, the combined model, the baselines, or a group's
own. Its module declares an `Arm` once; Table 3's SQL unions, the dbt sources of its lake tables,
the code versions, the thresholds of the evaluation, the model registry, promotion, scoring and
the report's sections are derived from the declarations. So a new arm is one new module.

Plain data and callables: an arm knows nothing of Dagster (the study group builds its asset from
`train`), nor of the report's HTML (it hands over figures and tables as `ReportFigure`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from metorigin.core.errors import MetoriginError
from metorigin.core.model_files import load_model_file
from metorigin.core.store import Store
from metorigin.core.study import StudySettings

TRAINING_MATRIX_QUERY = "select * from training_matrix order by lesion_id"


class NoLesionsToLearnFrom(MetoriginError):
    """A study step on a feature store whose training matrix is empty."""


def checked_training_matrix(matrix: pd.DataFrame) -> pd.DataFrame:
    if matrix.empty:
        raise NoLesionsToLearnFrom(
            "no lesions to learn from: training_matrix has no included lesion of an included scan "
            "(no scan met the inclusion criteria, or no lesion reached the minimum diameter, or the "
            'segmentations found none); see `metorigin sql --store STORE "select scan_id, '
            'exclusion_reason from scans"` and the lesions table'
        )
    return matrix


class Markdown(str):
    """Metadata text to show as markdown (a table) on the asset's page."""


@dataclass(frozen=True)
class ArmInputs:
    """What an arm's training reads: the study, the store (its artifacts folder for the model files),
    the lake tables it names in `Arm.reads`, and read-only SQL on the published feature store."""

    study: StudySettings
    store: Store
    tables: Mapping[str, pd.DataFrame]
    query: Callable[[str], pd.DataFrame]
    log: Callable[[str], None]

    def training_matrix(self) -> pd.DataFrame:
        return checked_training_matrix(self.query(TRAINING_MATRIX_QUERY))


@dataclass
class ArmOutput:
    """What an arm's training writes: Table 3's rows (one per model, with `model_id`, `arm`, `model`,
    `resampler`, the test metrics and `model_file`), every model's per-lesion probabilities
    (`evaluation`: test, out_of_fold or validation), the arm's other tables, and metadata per table
    for its asset page."""

    metrics: pd.DataFrame
    predictions: pd.DataFrame
    extras: dict[str, pd.DataFrame] = field(default_factory=dict)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class LesionData:
    """The lesions a frozen model scores: `wide` one row per lesion (ids and radiomics features),
    their rows of the `lesions` table (size, volume), their `lesion_slices` rows and the store whose
    slice files those rows name."""

    wide: pd.DataFrame
    lesions: pd.DataFrame
    slices: pd.DataFrame
    data_root: Path


# (the fitted model as `Arm.load` read it, its registry row, the lesions, the probabilities of a
# component model by id) -> the probability per lesion id; NaN where the model has none.
Scorer = Callable[[Any, Any, LesionData, Callable[[str], pd.Series]], pd.Series]


@dataclass(frozen=True)
class ReportFigure:
    """A figure of the study report: saved as SVG, PNG and (`data`) CSV under `name`."""

    name: str
    title: str
    caption: str
    figure: Any  # a matplotlib Figure
    data: pd.DataFrame | None


@dataclass(frozen=True)
class ReportSection:
    """A section of the study report of the arm's own: `draw` gets the arm's Table 3 rows and each
    row's model card, and returns the figures to show."""

    key: str
    title: str
    draw: Callable[[pd.DataFrame, list[dict]], list[ReportFigure]]


@dataclass(frozen=True)
class Arm:
    """One model arm, declared once in its module of metorigin/arms/ (as `ARM`; the module's name
    is the arm's `name`). It writes the lake tables `<name>_metrics` and `<name>_predictions`
    (Table 3 and `lesion_predictions` union them), and the extras named in `revisions`."""

    name: str  # the `arm` column of its rows; its models go under artifacts/models/<name>/
    title: str  # how messages name it ("no DenseNet in model_metrics: ...")
    asset: str  # the Dagster step that trains it
    train: Callable[[ArmInputs], ArmOutput]
    settings_step: str  # the study settings step it reads (metorigin/core/study.py STEP_SETTINGS)
    revisions: Mapping[str, int]  # each table it writes -> the revision of the code that computes it
    threshold_from: tuple[str, str]  # the `evaluation` rows its second cut-off is chosen on, and in words
    descriptions: Mapping[str, str]  # each table it writes -> what a row is (the asset page)
    reads: tuple[str, ...] = ()  # the Python assets it takes as inputs (the split, other arms' tables)
    feature_store: tuple[str, ...] = ("training_matrix",)  # the feature-store tables its SQL reads
    score: Scorer | None = None  # None: its models never score (external validation leaves them out)
    # The lesions' features (`lesion_id` and a column each; other columns are ignored) its models read, for the
    # out-of-distribution notes (and for `score`, where it uses them); None: the radiomics
    # features (`LesionData.wide`) as they are.
    features: Callable[[LesionData], pd.DataFrame] | None = None
    load: Callable[[Path], Any] = load_model_file  # a model file as `score` takes it (read as data)
    scores_new_patients: bool = True  # promotable: scan_predictions scores new scans with it
    report_sections: tuple[ReportSection, ...] = ()

    def lesion_features(self, lesions: LesionData) -> pd.DataFrame:
        return self.features(lesions) if self.features is not None else lesions.wide

    @property
    def metrics_table(self) -> str:
        return f"{self.name}_metrics"

    @property
    def predictions_table(self) -> str:
        return f"{self.name}_predictions"

    @property
    def tables(self) -> tuple[str, ...]:
        """Every lake table it writes: its metrics, its predictions, then its extras."""
        core = (self.metrics_table, self.predictions_table)
        return (*core, *(t for t in self.revisions if t not in core))
