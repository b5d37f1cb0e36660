"""The study: every protocol number in one validated object, read from a study file or built in.

The seed paper's study is built in as two profiles: `paper` reproduces its protocol; `quick` runs
the same steps with smaller DenseNet budgets so the whole study fits a 2-core laptop. A group with
another question writes a study file (YAML) that names a profile as its `base` and overrides it
field by field; the file is validated before any work (pydantic), and every refusal names the
file, the key path and the fix.

Settings split in two kinds. Protocol settings decide the numbers and are hashed, per pipeline
step, into the rows and model cards that step writes. Machine settings (worker counts, device,
where the nnU-Net folder lives) only decide how fast; they are marked `machine` and left out of
every hash, so a bigger machine never looks like another study.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator
from pydantic.dataclasses import dataclass

from metorigin.core.errors import StudyFileError
from metorigin.core.files import file_digest
from metorigin.core.package import RADIOMICS_PARAMS

DEFAULT_SEED = 20240613
DEFAULT_RADIOMICS_PARAMS = RADIOMICS_PARAMS
PACKAGED_PARAMS = "default"  # `radiomics.params_file: default` in a study file: the file above, wherever installed

CONTRAST_PHASES = ("native", "arterial", "portal_venous", "delayed")
CLASSIFIERS = (
    "xgboost",
    "random_forest",
    "linear_svm",
    "kernel_svm",
    "knn",
    "logistic_regression",
    "naive_bayes",
    "decision_tree",
)
RESAMPLERS = ("smote", "undersampling")
RETRAIN_POLICIES = ("manual", "on_change")  # the `retrain` values that are not a cron schedule

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)  # every number finite: `.inf` and `.nan` refused
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


def at_most(limit: float, reason: str) -> AfterValidator:
    """A ceiling that says why it is there. Every count and size of a study has one: `epochs: 1e9`
    or `bootstrap_resamples: 1e12` was accepted and ran until killed, and a typo should fail at
    load, naming the key, not a day into a run. The ceilings are far above any study's needs (the
    paper profile's 1,000 permutations included) and below what a machine could finish."""

    def check(value):
        if value is not None and value > limit:
            raise ValueError(f"at most {limit:,}: {reason}")
        return value

    return AfterValidator(check)


# Ceilings shared by several settings.
WORKERS = at_most(1024, "more processes than any one machine has cores")
PIXELS = at_most(2048, "a CT slice is 512 pixels across; larger images only cost memory")
MM = at_most(1000.0, "a length in mm; a liver is about 200 mm across")
FRACTION = at_most(1.0, "a fraction of the image")


def machine(default: Any = dataclasses.MISSING, **kwargs) -> Any:
    """A setting that changes speed, not results: left out of every settings hash."""
    return dataclasses.field(default=default, metadata={"machine": True}, **kwargs)


def added_later(default: Any, **kwargs) -> Any:
    """A protocol setting added after stores were built: hashed only when it differs from its default,
    so that at its default every step's settings hash, and so every existing store, stays as it was."""
    return dataclasses.field(default=default, metadata={"added_later": True}, **kwargs)


def _cpu_count() -> int:
    return max(1, os.cpu_count() or 1)


UNLABELLED = "unlabelled"  # the cohort of patients whose label cell is empty (Table 1, patient_predictions)


@dataclass(frozen=True, config=_STRICT)
class LabelSettings:
    """Which column of patients.csv holds the class, its two values, and which one is "positive"
    (probabilities are P(positive); AUC does not depend on the choice, sensitivity does)."""

    column: str = "primary_site"
    classes: tuple[str, str] = ("colorectal", "pancreatic")
    positive: str = "pancreatic"

    @field_validator("classes", mode="after")
    @classmethod
    def _distinct(cls, value: tuple[str, str]) -> tuple[str, str]:
        value = tuple(v.strip().lower() for v in value)
        if value[0] == value[1] or not all(value):
            raise ValueError("the two classes must be two different, non-empty names")
        if UNLABELLED in value:
            raise ValueError(
                f"{UNLABELLED!r} names the patients without a label (Table 1, predictions): choose another"
            )
        return value

    @field_validator("positive", mode="after")
    @classmethod
    def _positive_is_a_class(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip().lower()
        classes = info.data.get("classes")  # absent when the classes themselves were refused
        if classes and value not in classes:
            raise ValueError(f"positive class {value!r} is not one of the classes {list(classes)}")
        return value

    @property
    def negative(self) -> str:
        return next(c for c in self.classes if c != self.positive)


@dataclass(frozen=True, config=_STRICT)
class InclusionCriteria:
    """The study's acquisition protocol; scans outside it are kept but marked not included."""

    contrast_phases: Annotated[tuple[Literal[CONTRAST_PHASES], ...], Field(min_length=1)] = ("portal_venous",)  # type: ignore[valid-type]
    kernels: Annotated[tuple[str, ...], Field(min_length=1)] = ("B30s",)
    slice_thickness_mm: PositiveFloat = 1.5
    slice_thickness_tolerance_mm: NonNegativeFloat = 0.05
    max_slice_tilt_deg: Annotated[float, Field(ge=0, le=90)] = 5.0
    # Thinner images hold lesions of one or two slices: too thin for 3-D shape and texture to mean much.
    min_slices: Annotated[PositiveInt, at_most(100_000, "more slices than a CT has")] = added_later(3)


@dataclass(frozen=True, config=_STRICT)
class SegmentationSettings:
    """Where liver and lesion masks come from: the cohort's own masks, or an nnU-Net v2 model folder."""

    method: Literal["provided", "nnunet"] = "provided"
    nnunet_model_dir: str | None = machine(
        None
    )  # holds plans.json, dataset.json, fold_N/ (its weights are hashed per row)
    nnunet_folds: tuple[Annotated[int, Field(ge=0), at_most(99, "nnU-Net trains 5 folds")], ...] = (0,)
    nnunet_checkpoint: str = "checkpoint_final.pth"

    @field_validator("nnunet_checkpoint", mode="after")
    @classmethod
    def _inside_the_fold_folder(cls, value: str) -> str:
        """A file name inside each fold_N/ folder, nothing more: a shared study file must not point
        the loader at a file outside the model folder."""
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", value):
            raise ValueError(
                f"{value!r} is not a file name inside the model's fold_N/ folders (no '/', '..' or leading dot): "
                "give the checkpoint's file name, e.g. checkpoint_final.pth"
            )
        return value


@dataclass(frozen=True, config=_STRICT)
class LesionSettings:
    connectivity: Literal["face", "edge", "vertex"] = "face"  # 3-D neighbourhood of connected components
    min_diameter_mm: Annotated[NonNegativeFloat, MM] = 5.0  # the study excludes lesions under 5 mm largest diameter


@dataclass(frozen=True, config=_STRICT)
class RadiomicsSettings:
    params_file: str = str(DEFAULT_RADIOMICS_PARAMS)  # a pyradiomics parameter YAML; its content is hashed
    crop_margin_voxels: Annotated[int, Field(ge=1), at_most(100, "a margin around the lesion's box, in voxels")] = (
        2  # one voxel gives identical features; two is a margin
    )
    workers: Annotated[PositiveInt, WORKERS] = machine(default_factory=_cpu_count)


@dataclass(frozen=True, config=_STRICT)
class SliceSettings:
    size: Annotated[PositiveInt, PIXELS] = 224
    window_width: Annotated[PositiveFloat, at_most(10_000.0, "CT values span about 4,000 HU")] = 330.0
    window_level: Annotated[float, Field(ge=-2000, le=5000)] = 10.0  # in HU: air is -1000, metal about 3000
    border_fraction: Annotated[NonNegativeFloat, at_most(10.0, "a border this wide leaves the lesion a dot")] = (
        0.15  # border around the lesion, as a fraction of its larger in-plane extent
    )
    min_border_px: Annotated[NonNegativeInt, PIXELS] = 3
    # None (the study's): each lesion's square is scaled to fill the image, so every lesion looks the
    # same size to the DenseNet. A length in mm: a square of that field around every lesion instead,
    # so the network sees size (a lesion wider than the field is cut at its edge; the border settings
    # are then unused).
    field_mm: Annotated[PositiveFloat, MM] | None = None


@dataclass(frozen=True, config=_STRICT)
class SplitSettings:
    """The study's split: 4 test patients per class and 5 validation patients (the study's DenseNet
    split, 68/5/8, names 81 patients for its 78; here the rest of the 78 train: 65/5/8)."""

    test_patients_per_class: Annotated[PositiveInt, at_most(100_000, "more patients than a cohort holds")] = 4
    validation_fraction: Annotated[float, Field(gt=0, lt=1)] = 5 / 78  # 5 of the study's 78; >= one per class


@dataclass(frozen=True, config=_STRICT)
class ModelSettings:
    """Radiomics arm: which pipelines, selection, tuning and the two estimates of performance."""

    classifiers: Annotated[tuple[Literal[CLASSIFIERS], ...], Field(min_length=1)] = CLASSIFIERS  # type: ignore[valid-type]
    resamplers: Annotated[tuple[Literal[RESAMPLERS], ...], Field(min_length=1)] = RESAMPLERS  # type: ignore[valid-type]
    # Per classifier, hyper-parameter name -> candidate values; a classifier not named keeps its built-in grid.
    grids: dict[Literal[CLASSIFIERS], dict[str, tuple[Any, ...]]] = dataclasses.field(default_factory=dict)  # type: ignore[valid-type]
    max_abs_correlation: Annotated[float, Field(gt=0, le=1)] = 0.6  # the study's PCC threshold for redundant features
    importance_repeats: Annotated[PositiveInt, at_most(1000, "each repeat re-scores every held-out fold")] = (
        10  # permutation repeats per held-out fold (Table 2)
    )
    tuning_folds: Annotated[int, Field(ge=2), at_most(100, "each fold needs patients of both classes")] = (
        3  # grouped CV folds on the training patients for hyper-parameters
    )
    bootstrap_resamples: Annotated[
        PositiveInt, at_most(100_000, "past this the interval's Monte Carlo error is far below its width")
    ] = 1000  # patient-level bootstrap for the 95% intervals
    cv_repeats: Annotated[PositiveInt, at_most(1000, "each repeat is a tuned fit of every pipeline per fold")] = (
        5  # repeated grouped CV over all patients: repeats x folds
    )
    cv_folds: Annotated[int, Field(ge=2), at_most(100, "each fold needs test patients of both classes")] = 5
    workers: Annotated[PositiveInt, WORKERS] = machine(default_factory=_cpu_count)

    @property
    def n_pipelines(self) -> int:
        return len(self.classifiers) * len(self.resamplers)


@dataclass(frozen=True, config=_STRICT)
class DenseNetSettings:
    """DenseNet-121 training budget. `paper` trains on every slice at 224 px (a GPU's work);
    `quick` trains on each lesion's largest slices at 96 px for a few epochs, so a 2-core CPU
    finishes in minutes: same steps, smaller budget, and a weaker model (say so when you quote it)."""

    image_size: Annotated[PositiveInt, PIXELS] = 224
    epochs: Annotated[PositiveInt, at_most(10_000, "the study trains 30; the best epoch is kept")] = 30
    batch_size: Annotated[PositiveInt, at_most(4096, "a batch this size of 224-px slices fills a GPU many times")] = 64
    learning_rate: Annotated[PositiveFloat, at_most(10.0, "AdamW diverges far below this")] = 1e-3
    weight_decay: Annotated[NonNegativeFloat, at_most(10.0, "AdamW's decay; the study's is 1e-4")] = 1e-4
    max_slices_per_lesion: Annotated[PositiveInt, at_most(100_000, "more slices than a CT has")] | None = (
        None  # None: every slice; else the k with the largest lesion area
    )
    max_train_images_per_epoch: Annotated[PositiveInt, at_most(100_000_000, "a hundred million slices")] | None = (
        None  # None: one pass over the training slices per epoch
    )
    # Augmenting processes beside the trainer. On a 16-core H200 machine 12 kept the GPU busiest
    # (images/s as a share of a bare model step: 8: 69%, 10: 81%, 12: 81-85%, 14: 77%; the trainer
    # and the copy thread need cores too): benchmarks/densenet_throughput.py.
    loader_workers: Annotated[NonNegativeInt, WORKERS] = machine(default_factory=lambda: max(0, _cpu_count() - 4))
    device: str = machine("auto")  # auto: CUDA when present (bf16, channels-last), else CPU
    # Augmentation on the fly (the study's zoom, shear, rotation and width shift), each drawn per image.
    zoom: Annotated[NonNegativeFloat, FRACTION] = 0.1
    shear: Annotated[NonNegativeFloat, FRACTION] = 0.1
    rotate_deg: Annotated[NonNegativeFloat, at_most(180.0, "a rotation in degrees")] = 15.0
    width_shift: Annotated[NonNegativeFloat, FRACTION] = 0.1


@dataclass(frozen=True, config=_STRICT)
class RobustnessSettings:
    """How much of the radiomics arm chance could explain (metorigin/study/robustness.py): a label-permutation
    null (its p-value's floor is 1 / (permutations + 1)) and the arm refitted on other seeded test
    splits. Each permutation or split is one round: a tuned fit of every pipeline, about 1/26 of the
    paper profile's nested CV (5 x 5 outer folds and the final fit) and 1/11 of quick's (2 x 5).
    `paper`: 100 permutations (p down to 0.01) and 20 splits, 120 rounds or about 4.6 times the
    arm's own CPU; with 20 splits the 2.5-97.5 percentiles lie close to the range, enough to show
    whether the study's one split of 8 test patients is typical. `quick`: 20 permutations (p down
    to 0.05) and the study's split alone, about 2 minutes on the demo cohort on 2 cores. Extra
    analyses of the same protocol: in no hash but their own."""

    permutations: Annotated[
        NonNegativeInt, at_most(10_000, "each is a tuned refit of every pipeline; p reaches 1e-4")
    ] = 100  # 0: no permutation test
    split_repeats: Annotated[PositiveInt, at_most(10_000, "each is a tuned refit of every pipeline")] = (
        20  # 1: the study's split only
    )


EXECUTORS = ("in_process", "multiprocess", "dask")


@dataclass(frozen=True, config=_STRICT)
class SlurmSettings:
    """Dask workers as Slurm jobs (dask-jobqueue): `jobs` CPU worker jobs and `gpu_jobs` GPU worker
    jobs, each one Dask worker process; the scheduler runs where `metorigin run` runs."""

    partition: str = ""  # #SBATCH -p; empty: the cluster's default partition
    gpu_partition: str = ""  # for the GPU jobs; empty: `partition`
    account: str = ""  # #SBATCH -A; empty: none
    cores: Annotated[PositiveInt, WORKERS] = 4  # per job
    memory: str = "16GB"  # per job
    walltime: str = "02:00:00"
    jobs: Annotated[NonNegativeInt, at_most(10_000, "Slurm jobs at once")] = 2  # CPU worker jobs
    gpu_jobs: Annotated[NonNegativeInt, at_most(10_000, "Slurm jobs at once")] = (
        0  # GPU worker jobs, each with `gpus` GPUs (--gres=gpu:N)
    )
    gpus: Annotated[PositiveInt, at_most(64, "GPUs per node")] = 1
    python: str = ""  # the workers' Python (the environment metorigin is installed in); empty: this one
    directives: tuple[str, ...] = ()  # more #SBATCH lines, e.g. "--qos=long"


@dataclass(frozen=True, config=_STRICT)
class ClusterSettings:
    """Where the per-scan runs go. `in_process`: one scan after another in this process;
    `multiprocess`: `scans_at_once` scans at a time, each in a process of its own; `dask`: each
    step of `scans_at_once` concurrent runs on a Dask cluster (dagster-dask): an existing scheduler
    (`address`), a local cluster of `local_workers` processes, or Slurm jobs (`slurm`)."""

    # multiprocess: the 78-scan demo's imaging in 292 s against 566 s one scan after another, and
    # 345 s on a local Dask cluster of 2 workers (2 cores; README "Beyond one machine").
    executor: Literal["in_process", "multiprocess", "dask"] = "multiprocess"
    scans_at_once: Annotated[PositiveInt, at_most(100_000, "scans in flight at once")] = 2
    address: str = ""  # tcp://HOST:PORT of an existing Dask scheduler
    local_workers: Annotated[PositiveInt, WORKERS] = 2
    slurm: SlurmSettings | None = None
    # Steps that want a GPU (nnU-Net segmentation, DenseNet scoring) need a worker with the Dask
    # resource GPU; true: the workers metorigin starts offer it on CPU too (a cluster without GPUs).
    gpu_steps_on_cpu: bool = False
    # A step whose resource no worker offers fails after this long, naming the resource.
    resource_timeout_s: Annotated[PositiveInt, at_most(86_400, "a day")] = 120
    # A scan's file still being read after this long (a stalled network mount) fails that scan, at
    # ingest or in its integrity check; the others go on.
    read_timeout_s: Annotated[PositiveInt, at_most(86_400, "a day")] = 300


@dataclass(frozen=True, config=_STRICT)
class StudySettings:
    profile: str = "quick"  # the built-in profile the study starts from
    name: str = "seed paper: colorectal vs pancreatic liver metastases"
    seed: Annotated[int, Field(ge=0, lt=2**32)] = DEFAULT_SEED  # NumPy's and scikit-learn's seeds are 32-bit
    label: LabelSettings = dataclasses.field(default_factory=LabelSettings)
    inclusion: InclusionCriteria = dataclasses.field(default_factory=InclusionCriteria)
    segmentation: SegmentationSettings = dataclasses.field(default_factory=SegmentationSettings)
    lesions: LesionSettings = dataclasses.field(default_factory=LesionSettings)
    radiomics: RadiomicsSettings = dataclasses.field(default_factory=RadiomicsSettings)
    slices: SliceSettings = dataclasses.field(default_factory=SliceSettings)
    split: SplitSettings = dataclasses.field(default_factory=SplitSettings)
    models: ModelSettings = dataclasses.field(default_factory=ModelSettings)
    densenet: DenseNetSettings = dataclasses.field(default_factory=DenseNetSettings)
    robustness: RobustnessSettings = dataclasses.field(default_factory=RobustnessSettings)
    # When the daemon retrains the study after the feature store changed: `manual` (only when a run
    # or the UI asks), `on_change` (after each rebuild of the feature store), or a cron schedule
    # ("0 3 * * 1": Mondays at 03:00, if the feature store changed since the last tick). When, not
    # what: it is in no hash.
    retrain: str = machine("manual")
    # `metorigin forget` deletes every model that learnt from the patient; true: it retrains the study
    # at once, without them (false: until someone retrains, the study has no models to promote). When,
    # not what: in no hash.
    retrain_on_forget: bool = machine(False)
    # Where the work runs (one machine or a Dask cluster): how fast, never what; in no hash.
    cluster: ClusterSettings = machine(default_factory=ClusterSettings)

    @field_validator("retrain")
    @classmethod
    def _retrain_policy(cls, value: str) -> str:
        fields = value.split()
        cron = len(fields) == 5 and all(set(f) <= set("0123456789*/,-") for f in fields)
        if value not in RETRAIN_POLICIES and not cron:
            raise ValueError(
                f"{value!r} is not a retraining policy: use manual, on_change, or a cron schedule of five fields "
                "such as '0 3 * * 1'"
            )
        return value

    def step_hash(self, step: str) -> str:
        """The hash of exactly the settings `step` reads (see STEP_SETTINGS), machine settings left out."""
        return _digest({section: protocol(self, section) for section in STEP_SETTINGS[step]})

    def study_hash(self) -> str:
        """The hash of the whole protocol: a store is bound to one. The extra analyses of its
        results (more permutations, more splits) are not another study: they are left out."""
        return _digest({step: self.step_hash(step) for step in STEP_SETTINGS if step not in EXTRA_ANALYSES})

    def step_hashes(self) -> dict[str, str]:
        return {step: self.step_hash(step) for step in STEP_SETTINGS}


# Which settings sections each pipeline step reads. A change re-hashes only the steps listing its section.
STEP_SETTINGS: dict[str, tuple[str, ...]] = {
    "cohort": ("label", "inclusion"),
    "segmentation": ("segmentation",),
    "lesions": ("lesions",),
    "radiomics": ("radiomics",),
    "slices": ("slices",),
    "split": ("seed", "label", "split"),
    "selection": ("seed", "label", "models"),
    "radiomics_models": ("seed", "label", "models"),
    "densenet": ("seed", "label", "densenet", "models"),  # models: its bootstrap count
    "combined": ("seed", "label", "models", "densenet"),
    "robustness": ("seed", "label", "split", "models", "robustness"),
}
EXTRA_ANALYSES = ("robustness",)


def protocol_fields(section: Any) -> dict:
    """A settings section's fields without its machine settings, nor those added later at their default."""
    return {f.name: getattr(section, f.name) for f in dataclasses.fields(section) if _hashed(section, f)}


def _hashed(section: Any, field: dataclasses.Field) -> bool:
    if field.metadata.get("machine"):
        return False
    return not (field.metadata.get("added_later") and getattr(section, field.name) == field.default)


def protocol(settings: StudySettings, section: str) -> Any:
    """A section's protocol settings as plain data (machine settings dropped; the radiomics
    parameter file by content, not by path)."""
    value = getattr(settings, section)
    if not dataclasses.is_dataclass(value):
        return value
    data = protocol_fields(value)
    if section == "radiomics":
        data["params_file"] = file_digest(Path(value.params_file), length=64)
    return data


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=list).encode()).hexdigest()[:12]


PROFILE_OVERRIDES: dict[str, dict] = {
    "paper": {"profile": "paper"},
    "quick": {
        "profile": "quick",
        # Nested CV tunes every pipeline in every outer fold: 2 x 5 outer folds, not 5 x 5.
        "models": {"cv_repeats": 2},
        "robustness": {"permutations": 20, "split_repeats": 1},
        "densenet": {
            "image_size": 96,
            "epochs": 4,
            "batch_size": 32,
            "max_slices_per_lesion": 3,
            "max_train_images_per_epoch": 1000,
            "loader_workers": 0,
        },
    },
}
PROFILES = tuple(PROFILE_OVERRIDES)
SETTINGS_ADAPTER = TypeAdapter(StudySettings)


def get_settings(profile: str, seed: int | None = None) -> StudySettings:
    """A built-in profile, optionally with another seed."""
    if profile not in PROFILE_OVERRIDES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    overrides = dict(PROFILE_OVERRIDES[profile], **({} if seed is None else {"seed": seed}))
    return SETTINGS_ADAPTER.validate_python(overrides)


def with_run_choices(
    settings: StudySettings,
    nnunet_model_dir: str | None = None,
    workers: int = 0,
    densenet_epochs: int = 0,
    split_repeats: int = 0,
    executor: str = "",
    dask_address: str = "",
    scans_at_once: int = 0,
) -> StudySettings:
    """The study with the choices a user makes per run on the command line: an nnU-Net model folder
    (segmentation by nnU-Net), worker processes (machine only), DenseNet epochs (a protocol change:
    it changes the study's hash), test splits to refit the radiomics arm on (an extra analysis:
    only its own step's hash changes), and where the scans run (executor, Dask scheduler, scans at
    once: machine only)."""
    replace = dataclasses.replace
    if nnunet_model_dir:
        settings = replace(
            settings,
            segmentation=replace(settings.segmentation, method="nnunet", nnunet_model_dir=str(nnunet_model_dir)),
        )
    if workers > 0:
        settings = replace(
            settings,
            radiomics=replace(settings.radiomics, workers=workers),
            models=replace(settings.models, workers=workers),
        )
    if densenet_epochs > 0:
        settings = replace(settings, densenet=replace(settings.densenet, epochs=densenet_epochs))
    if split_repeats > 0:
        settings = replace(settings, robustness=replace(settings.robustness, split_repeats=split_repeats))
    if executor or dask_address or scans_at_once:  # where the scans run (machine only); an address means Dask
        cluster = settings.cluster
        settings = replace(
            settings,
            cluster=replace(
                cluster,
                executor=executor or ("dask" if dask_address else cluster.executor),
                address=dask_address or cluster.address,
                scans_at_once=scans_at_once or cluster.scans_at_once,
            ),
        )
    return settings


def run_problems(settings: StudySettings, source: str) -> list[StudyFileError]:
    """What the study needs from this run and lacks: a model folder when it segments with nnU-Net."""
    if settings.segmentation.method == "nnunet" and not settings.segmentation.nnunet_model_dir:
        return [
            StudyFileError(
                source,
                "segmentation.method",
                "segmentation by nnU-Net needs a model folder",
                "pass --nnunet-model DIR (the folder nnU-Net wrote: plans.json, dataset.json, fold_N/)",
            )
        ]
    return []


def plain_settings(settings: StudySettings) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(settings), default=list))


def as_dict(settings: StudySettings) -> dict:
    """The effective settings as a complete study file: `base` (the profile) and every other key."""
    plain = plain_settings(settings)
    return {"base": plain.pop("profile"), **plain}
