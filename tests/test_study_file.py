"""The study file: validated before any work, hashed per step, bound to one store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from metorigin.cli.main import main
from metorigin.cli.session import study_file_problems
from metorigin.core.errors import StoreStudyMismatch, StudyFileError
from metorigin.core.manifest import bind_study, read_manifest, settings_table
from metorigin.core.package import EXAMPLES_DIR, RADIOMICS_PARAMS
from metorigin.core.store import Store
from metorigin.core.study import STEP_SETTINGS, as_dict, get_settings, with_run_choices
from metorigin.core.study_file import load_study
from metorigin.imaging.study_fit import study_problems

EXAMPLES = EXAMPLES_DIR


def _study(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_example_paper_study_is_the_built_in_study():
    assert as_dict(load_study(EXAMPLES / "paper.yaml")) == as_dict(get_settings("paper"))
    assert load_study(EXAMPLES / "paper.yaml").study_hash() == get_settings("paper").study_hash()


def test_a_study_file_overrides_its_base_profile_field_by_field(tmp_path):
    study = load_study(_study(tmp_path, "base: quick\nlesions: {min_diameter_mm: 7}\nlabel: {positive: colorectal}\n"))
    quick = get_settings("quick")
    assert study.lesions.min_diameter_mm == 7 and study.lesions.connectivity == quick.lesions.connectivity
    assert study.densenet == quick.densenet and study.label.negative == "pancreatic"
    second = load_study(EXAMPLES / "sharp_kernels_colorectal_positive.yaml")
    assert second.inclusion.kernels == ("B30s", "B70f") and second.models.n_pipelines == 3
    assert second.study_hash() != quick.study_hash()


@pytest.mark.parametrize(
    "text, key, problem",
    [
        ("lesions: {min_diameter: 7}\n", "lesions.min_diameter", "unknown key"),
        ("split: {test_patients_per_class: four}\n", "split.test_patients_per_class", "valid integer"),
        ("inclusion: {slice_thickness_mm: -1.5}\n", "inclusion.slice_thickness_mm", "greater than 0"),
        ("label: {positive: hepatic}\n", "label.positive", "positive class 'hepatic' is not one of the classes"),
        ("base: [paper]\n", "base", "unknown base profile"),
        ("models: {classifiers: [knn, svm]}\n", "models.classifiers.1", "'svm'"),
        ("base: fast\n", "base", "unknown base profile 'fast'"),
        ("radiomics: {params_file: missing.yaml}\n", "radiomics.params_file", "'missing.yaml' does not exist"),
        ("seed: [1\n", "", "not valid YAML"),
        ("retrain: weekly\n", "retrain", "'weekly' is not a retraining policy"),
        # Every number has a range (issue 28): finite, and below a ceiling that says why.
        ("densenet: {epochs: 1000000000}\n", "densenet.epochs", "at most 10,000: the study trains 30"),
        ("densenet: {batch_size: 100000000}\n", "densenet.batch_size", "at most 4,096"),
        ("models: {bootstrap_resamples: 1000000000000}\n", "models.bootstrap_resamples", "at most 100,000"),
        ("robustness: {permutations: 100000}\n", "robustness.permutations", "at most 10,000"),
        ("lesions: {min_diameter_mm: .inf}\n", "lesions.min_diameter_mm", "finite number"),
        ("slices: {window_level: .nan}\n", "slices.window_level", "finite number"),
        ("seed: -1\n", "seed", "greater than or equal to 0"),
        ("radiomics: {params_file: ../../../etc/passwd}\n", "radiomics.params_file", "outside the study file's folder"),
        ("radiomics: {params_file: /etc/shadow}\n", "radiomics.params_file", "outside the study file's folder"),
    ],
)
def test_a_bad_study_file_is_refused_with_the_file_the_key_and_the_fix(tmp_path, text, key, problem):
    path = _study(tmp_path, text)
    with pytest.raises(StudyFileError) as caught:
        load_study(path)
    message = str(caught.value)
    assert caught.value.key == key and message.startswith(f"{path}: {key}".rstrip(": "))
    assert problem in message and "Fix: " in message


def test_each_step_hash_covers_exactly_the_settings_the_step_reads(tmp_path):
    quick = get_settings("quick")
    bigger = load_study(_study(tmp_path, "lesions: {min_diameter_mm: 7}\n"))
    changed = {step for step in STEP_SETTINGS if quick.step_hash(step) != bigger.step_hash(step)}
    assert changed == {"lesions"}
    reseeded = get_settings("quick", seed=1)
    assert {s for s in STEP_SETTINGS if quick.step_hash(s) != reseeded.step_hash(s)} == {
        "split",
        "selection",
        "radiomics_models",
        "densenet",
        "combined",
        "robustness",
    }
    # More permutations or splits re-run the robustness step only, and are not another study.
    more = with_run_choices(quick, split_repeats=5)
    assert {s for s in STEP_SETTINGS if quick.step_hash(s) != more.step_hash(s)} == {"robustness"}
    assert more.study_hash() == quick.study_hash() and more.robustness.split_repeats == 5
    # Machine settings change how fast, never which numbers: no hash moves.
    faster = dataclasses.replace(
        quick,
        models=dataclasses.replace(quick.models, workers=64),
        densenet=dataclasses.replace(quick.densenet, loader_workers=12, device="cuda"),
    )
    assert faster.step_hashes() == quick.step_hashes() and faster.study_hash() == quick.study_hash()


def test_the_radiomics_hash_follows_the_parameter_file_content(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(RADIOMICS_PARAMS.read_text())
    study = _study(tmp_path, "radiomics: {params_file: params.yaml}\n")
    assert load_study(study).step_hash("radiomics") == get_settings("quick").step_hash("radiomics")
    params.write_text(params.read_text().replace("binWidth: 25", "binWidth: 10"))
    assert load_study(study).step_hash("radiomics") != get_settings("quick").step_hash("radiomics")


@pytest.mark.parametrize(
    "text, key, problem",
    [
        ("label: {column: histology}\n", "label.column", "patients.csv has no column 'histology'"),
        (
            "label: {classes: [colorectal, gastric], positive: gastric}\n",
            "label.classes",
            "the class 'gastric' (found: colorectal, pancreatic)",
        ),
        ("inclusion: {kernels: [B99f]}\n", "inclusion.kernels", "not one of the 10 readable scans"),
    ],
)
def test_a_study_that_does_not_fit_the_cohort_is_refused_before_any_work(cohort, tmp_path, text, key, problem):
    path = _study(tmp_path, text)
    problems = study_problems(cohort, load_study(path), str(path))
    assert problems and problems[0].key == key and problem in str(problems[0])
    store = tmp_path / "store"
    assert main(["run", "--cohort", str(cohort), "--store", str(store), "--study", str(path)]) == 2
    assert not store.exists()  # nothing was written


def test_a_store_holds_one_study(tmp_path):
    store = Store(tmp_path / "store")
    quick = get_settings("quick")
    other = load_study(_study(tmp_path, "lesions: {min_diameter_mm: 7}\nname: bigger lesions\n"))
    assert bind_study(store, quick) == []
    assert bind_study(store, quick) == []  # the same study again is fine
    with pytest.raises(StoreStudyMismatch) as caught:
        bind_study(store, other)
    message = str(caught.value)
    assert quick.study_hash() in message and other.study_hash() in message and "--replace-study" in message
    assert read_manifest(store)["study_hash"] == quick.study_hash()  # the refusal changed nothing
    bind_study(store, other, replace=True)
    manifest = read_manifest(store)
    assert manifest["study_hash"] == other.study_hash()
    assert [h["study_hash"] for h in manifest["study_history"]] == [quick.study_hash(), other.study_hash()]
    assert yaml.safe_load((store.root / "study.yaml").read_text())["lesions"]["min_diameter_mm"] == 7


def test_the_settings_table_has_one_row_per_setting_with_the_steps_that_read_it():
    table = settings_table(get_settings("quick")).set_index("key")
    assert table.loc["lesions.min_diameter_mm", "value"] == "5.0"
    assert table.loc["lesions.min_diameter_mm", "read_by"] == "lesions"
    assert table.loc["seed", "read_by"] == "split, selection, radiomics_models, densenet, combined, robustness"
    assert table.loc["robustness.permutations", "value"] == "20"
    assert table["study_hash"].nunique() == 1


def test_the_effective_settings_are_themselves_a_study_file(tmp_path):
    paper = get_settings("paper", seed=3)
    again = load_study(_study(tmp_path, yaml.safe_dump(as_dict(paper))))
    assert again == paper and again.study_hash() == paper.study_hash()


def test_what_a_run_lacks_and_unknown_grid_parameters_are_refused_by_key(tmp_path):
    from metorigin.core.study import run_problems
    from metorigin.study.classifiers import grid_problems

    nnunet = load_study(_study(tmp_path, "segmentation: {method: nnunet}\n"))
    assert [p.key for p in run_problems(nnunet, "s.yaml")] == ["segmentation.method"]
    assert run_problems(with_run_choices(nnunet, nnunet_model_dir="/models/liver"), "s.yaml") == []
    typo = load_study(_study(tmp_path, "models: {grids: {knn: {n_neighbours: [3, 5]}}}\n", "typo.yaml"))
    problems = grid_problems(typo.models, "typo.yaml")
    assert [p.key for p in problems] == ["models.grids.knn.n_neighbours"] and "n_neighbors" in problems[0].fix


def test_the_run_configuration_comes_from_the_flags_and_travels_as_one_file(tmp_path, monkeypatch):
    from metorigin.cli.main import parser
    from metorigin.cli.session import run_config
    from metorigin.core.config import CONFIG_FILE, RunConfig, for_code_location

    monkeypatch.setenv("METORIGIN_SEED", "5")  # variables of older versions change nothing now
    monkeypatch.setenv("METORIGIN_DENSENET_EPOCHS", "9")
    args = parser().parse_args(["run", "--cohort", "c", "--store", "s", "--densenet-epochs", "2"])
    config = run_config(args)
    assert config.seed is None and config.densenet_epochs == 2 and Path(config.store).is_absolute()
    assert config.study().densenet.epochs == 2 and config.study() is config.study()  # parsed once
    # A code location (`metorigin ui`'s) reads it from the instance folder, and only there.
    config.write_for_instance(tmp_path)
    assert RunConfig.from_json((tmp_path / CONFIG_FILE).read_text()) == config
    monkeypatch.setattr("metorigin.core.config._active", [])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert for_code_location() == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 3


def test_a_retrain_schedule_dagster_cannot_run_is_refused_and_retrain_is_in_no_hash(tmp_path):
    from metorigin.defs.study.schedules import retrain_problems

    weekly = load_study(_study(tmp_path, "retrain: '0 3 * * 1'\n"))
    assert weekly.study_hash() == get_settings("quick").study_hash()  # when, not what: the same study
    assert retrain_problems(weekly, "study.yaml") == []
    (problem,) = retrain_problems(load_study(_study(tmp_path, "retrain: '99 99 * * *'\n")), "study.yaml")
    assert problem.key == "retrain" and "not a cron schedule Dagster can run" in str(problem)


def test_metorigin_demo_is_metorigin_run_with_every_run_default(tmp_path):
    """`demo` once built its own argument set for `run` and missed a run option added later (--force)."""
    from metorigin.cli.main import parser as _parser
    from metorigin.cli.run import demo_run_arguments, demo_synth_arguments

    demo = _parser().parse_args(["demo", "--cohort", str(tmp_path / "c"), "--store", str(tmp_path / "s"), "--no-wait"])
    as_demo = vars(_parser().parse_args(demo_run_arguments(demo)))
    as_run = vars(_parser().parse_args(["run", "--cohort", str(tmp_path / "c"), "--store", str(tmp_path / "s")]))
    assert as_demo.keys() == as_run.keys() and as_demo["no_wait"] and not as_demo["force"]
    synth = vars(_parser().parse_args(demo_synth_arguments(tmp_path / "c")))  # `synth --add-to` broke it once
    assert synth.keys() == vars(_parser().parse_args(["synth", "--out", "x"])).keys() and synth["add_to"] is None


def test_the_paper_profile_with_a_thousand_permutations_is_within_every_range(tmp_path):
    study = load_study(_study(tmp_path, "base: paper\nrobustness: {permutations: 1000}\n"))
    assert study.robustness.permutations == 1000
    # The ranges are no new settings: the hashes of the built-in studies are what they were.
    assert get_settings("paper").study_hash() == "a32731395c1e" and get_settings("quick").study_hash() == "de6e89a75ad4"


def test_a_parameter_file_pyradiomics_refuses_is_refused_when_the_study_is_checked(tmp_path):
    (tmp_path / "params.yaml").write_text("imageType: {Original: {}}\nsetting: {binWidth: -3}\n")
    path = _study(tmp_path, "radiomics: {params_file: params.yaml}\n")
    (problem,) = [p for p in study_file_problems(load_study(path), path, None) if p.key == "radiomics.params_file"]
    assert "pyradiomics' schema refuses it" in str(problem) and "/setting/binWidth" in str(problem)
    assert not [p for p in study_file_problems(get_settings("quick"), None, None) if p.key == "radiomics.params_file"]


def test_a_store_keeps_its_study_s_own_parameter_file_beside_its_study_file(tmp_path):
    """The store's study.yaml names `default` or a copy in the store: a parameter file must lie in the
    folder of the study file that names it, and the store's study loads wherever it moved."""
    (tmp_path / "params.yaml").write_text(RADIOMICS_PARAMS.read_text().replace("binWidth: 25", "binWidth: 10"))
    own = load_study(_study(tmp_path, "radiomics: {params_file: params.yaml}\n"))
    store, expected = Store(tmp_path / "store"), own.study_hash()
    bind_study(store, own)
    assert (
        yaml.safe_load((store.root / "study.yaml").read_text())["radiomics"]["params_file"] == "radiomics_params.yaml"
    )
    (tmp_path / "params.yaml").unlink()
    assert load_study(store.root / "study.yaml").study_hash() == expected
    bound = Store(tmp_path / "quick")
    bind_study(bound, get_settings("quick"))
    assert yaml.safe_load((bound.root / "study.yaml").read_text())["radiomics"]["params_file"] == "default"
