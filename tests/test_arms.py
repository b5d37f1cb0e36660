"""The model arms as a registry (metorigin/arms/): what each declares, what is derived from the
declarations, and an arm's training and scoring as plain functions. No pipeline run here: the
arms in a real run are test_study.py's, and a new arm from one module is test_wheel.py's."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from metorigin.arms import ARMS, BY_NAME, METRIC_TABLES, PROMOTABLE, _problems
from metorigin.arms import combined as combined_arm
from metorigin.core import arm_sources
from metorigin.core.arm_sources import MACRO_FILE, SOURCES_FILE, arm_files, arm_module_names, write_arm_files
from metorigin.core.package import ARMS_DIR
from metorigin.core.store import Store
from metorigin.core.study import get_settings
from metorigin.defs.study.arms import arm_asset, outputs
from metorigin.inference.registry import registered_arm
from metorigin.runtime.versions import REVISIONS
from metorigin.study.arm import ArmInputs, ArmOutput, LesionData, Markdown
from metorigin.study.scoring import RegisteredModel, ScoringRefused, read_card

# The code versions the arms' tables had when they were listed by hand (runtime/versions.py before
# the registry): a store trained then must find its models fresh, so these must not move by accident.
# Moved on purpose since: radiomics, baseline and combined by one when their model files became
# skops data instead of pickles (a store's pickled models must be retrained, never read).
REVISIONS_BEFORE = {
    "radiomics_metrics": (6, "radiomics_models"),
    "radiomics_predictions": (5, "radiomics_models"),
    "radiomics_cv_folds": (1, "radiomics_models"),
    "radiomics_cv_predictions": (1, "radiomics_models"),
    "baseline_metrics": (4, "radiomics_models"),
    "baseline_predictions": (4, "radiomics_models"),
    "densenet_metrics": (3, "densenet"),
    "densenet_predictions": (3, "densenet"),
    "combined_metrics": (5, "combined"),
    "combined_predictions": (5, "combined"),
}


def test_every_module_is_an_arm_and_the_study_s_arms_keep_their_code_versions():
    """A group's own arm may join them (the asserts hold with it): the study's four are pinned."""
    assert [arm.name for arm in ARMS] == arm_module_names(ARMS_DIR)
    assert {"baseline", "combined", "densenet", "radiomics"} <= set(BY_NAME)
    assert {table: REVISIONS[table] for table in REVISIONS_BEFORE} == REVISIONS_BEFORE
    assert set(REVISIONS_BEFORE) == {
        t for name in ("baseline", "combined", "densenet", "radiomics") for t in BY_NAME[name].tables
    }
    assert METRIC_TABLES == tuple(sorted(METRIC_TABLES)) and "radiomics_metrics" in METRIC_TABLES
    assert {"combined", "densenet", "radiomics"} <= set(PROMOTABLE) and "baseline" not in PROMOTABLE


def test_the_dbt_generator_runs_on_the_standard_library_alone(tmp_path):
    """setup.py loads it by path in the wheel's isolated build, where none of our dependencies is."""
    (tmp_path / "models" / "results").mkdir(parents=True)
    (tmp_path / "macros").mkdir()
    script = (
        "import importlib.util, sys; from pathlib import Path; "
        "spec = importlib.util.spec_from_file_location('s', sys.argv[1]); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        "print(m.write_arm_files(Path(sys.argv[2]), m.arm_module_names(Path(sys.argv[3]))))"
    )
    source = Path(arm_sources.__file__)
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, source, tmp_path, ARMS_DIR], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr
    assert (tmp_path / SOURCES_FILE).read_text() == arm_files([arm.name for arm in ARMS])[SOURCES_FILE]


def test_the_dbt_sources_and_unions_are_written_from_the_arms_and_only_when_they_change(tmp_path):
    (tmp_path / "models" / "results").mkdir(parents=True)
    (tmp_path / "macros").mkdir()
    names = [arm.name for arm in ARMS]
    assert write_arm_files(tmp_path, names)
    (source,) = yaml.safe_load((tmp_path / SOURCES_FILE).read_text())["sources"]
    tables = {t["name"]: t["meta"]["dagster"]["asset_key"] for t in source["tables"]}
    assert tables == {t: [t] for arm in ARMS for t in (arm.metrics_table, arm.predictions_table)}
    assert '"metrics": ["baseline_metrics", "combined_metrics"' in (tmp_path / MACRO_FILE).read_text()
    written = (tmp_path / SOURCES_FILE).stat().st_mtime_ns
    assert not write_arm_files(tmp_path, names)  # unchanged: not rewritten, so the manifest stays fresh
    assert (tmp_path / SOURCES_FILE).stat().st_mtime_ns == written
    assert write_arm_files(tmp_path, [*names, "toy"])
    assert "toy_predictions" in arm_files([*names, "toy"])[SOURCES_FILE]


def test_a_wrongly_declared_arm_is_refused_with_what_to_fix():
    assert _problems("toy", None) == ["it defines no `ARM = Arm(...)` (metorigin/study/arm.py)"]
    wrong = replace(BY_NAME["baseline"], name="toy", revisions={"toy_metrics": 1})
    problems = _problems("other", wrong)
    assert problems[0] == "its arm is named 'toy': name it 'other', as the module"
    assert "`revisions` lacks toy_predictions" in problems[1]
    assert "`descriptions` must describe exactly the tables of `revisions`" in problems[2]
    hostile = replace(BY_NAME["baseline"], name="scan", revisions={"scan_metrics": 1, "scan_predictions": 1})
    hostile = replace(hostile, descriptions=dict.fromkeys(hostile.revisions, ""), settings_step="nowhere")
    hostile = replace(hostile, threshold_from=("test", "the test patients"), reads=("patient_split", "store"))
    problems = _problems("scan", hostile)
    assert problems[0].startswith("`settings_step` 'nowhere' is none of ") and "radiomics_models" in problems[0]
    assert problems[1] == "`threshold_from` must name `out_of_fold` or `validation` rows, never the test patients"
    assert problems[2] == "scan_predictions is already a table of the pipeline: name the arm otherwise"
    assert problems[3] == "`reads` names store, which the step's resources use"
    assert _problems("baseline", BY_NAME["baseline"]) == []


def test_an_arm_becomes_one_step_with_its_inputs_and_tables():
    step = arm_asset(BY_NAME["combined"])
    assert step.op.name == "combined_model"
    assert {k.to_user_string() for k in step.keys} == {"combined_metrics", "combined_predictions"}
    assert set(step.keys_by_input_name) == {"radiomics_metrics", "radiomics_predictions", "densenet_predictions"}
    densenet = arm_asset(BY_NAME["densenet"])
    assert dg.AssetKey(["feature_store", "lesion_slices"]) in densenet.dependency_keys
    assert densenet.descriptions_by_key[dg.AssetKey("densenet_metrics")] == "Table 3, DenseNet-121 row"


def test_an_arm_output_is_written_table_by_table_with_its_metadata():
    arm = BY_NAME["radiomics"]
    frames = {table: pd.DataFrame({"x": [i]}) for i, table in enumerate(arm.tables)}
    output = ArmOutput(
        frames["radiomics_metrics"],
        frames["radiomics_predictions"],
        {t: frames[t] for t in arm.tables[2:]},
        {"radiomics_metrics": {"table_3": Markdown("| a |"), "auc": 0.5}},
    )
    written = list(outputs(arm, output))
    assert [o.output_name for o in written] == list(arm.tables)
    assert all(o.value is frames[o.output_name] for o in written)
    assert written[0].metadata["table_3"] == dg.MetadataValue.md("| a |") and written[0].metadata["auc"].value == 0.5
    short = replace(output, extras={"radiomics_cv_folds": frames["radiomics_cv_folds"]})
    with pytest.raises(dg.Failure, match="declares radiomics_metrics, .*radiomics_cv_predictions. Fix: return exactly"):
        list(outputs(arm, short))


def _lesions(patients: int, evaluation: str) -> pd.DataFrame:
    ids = [(f"{evaluation}{p}-{k}", f"S{evaluation}{p}", f"{evaluation}{p}") for p in range(patients) for k in range(2)]
    frame = pd.DataFrame(ids, columns=["lesion_id", "scan_id", "patient_id"])
    return frame.assign(label=np.where(frame.index % 4 < 2, "colorectal", "pancreatic"))


def test_the_combined_arm_averages_when_the_validation_patients_are_few_and_scores_as_it_trained(tmp_path):
    study = get_settings("quick")
    rng = np.random.default_rng(0)
    validation, test = _lesions(2, "v"), _lesions(4, "t")
    radiomics = pd.concat([validation.assign(evaluation="out_of_fold"), test.assign(evaluation="test")])
    radiomics = radiomics.assign(probability=rng.uniform(size=len(radiomics)), model_id="knn_smote-1")
    densenet = pd.concat([validation.assign(evaluation="validation"), test.assign(evaluation="test")])
    densenet = densenet.assign(probability=rng.uniform(size=len(densenet)), model_id="densenet121-1")
    metrics = pd.DataFrame(
        [{"model_id": "knn_smote-1", "model": "knn", "resampler": "smote", "cv_auc": 0.7, "auc": 0.6}]
    )
    store = Store(tmp_path / "store")
    tables = {"radiomics_metrics": metrics, "radiomics_predictions": radiomics, "densenet_predictions": densenet}
    inputs = ArmInputs(study, store, tables, lambda sql: pytest.fail(f"no SQL expected: {sql}"), lambda line: None)
    output = combined_arm.train(inputs)

    (row,) = output.metrics.to_dict("records")
    assert row["arm"] == "combined" and row["model"] == "knn+densenet121" and row["resampler"] == "smote"
    card = read_card(store.root, row["model_file"])
    assert card["components"] == {"radiomics": "knn_smote-1", "densenet": "densenet121-1"}
    assert card["training_patient_ids"] == []  # two validation patients: a mean, learnt from no one
    tested = output.predictions[output.predictions["evaluation"] == "test"].set_index("lesion_id")["probability"]
    expected = (
        radiomics[radiomics["evaluation"] == "test"].set_index("lesion_id")["probability"]
        + densenet[densenet["evaluation"] == "test"].set_index("lesion_id")["probability"]
    ) / 2
    pd.testing.assert_series_equal(tested.sort_index(), expected.sort_index(), check_names=False)

    # Scoring new lesions: the saved model on the components' probabilities, exactly as at training.
    model = RegisteredModel(row["model_id"], "combined", row["model"], row["model_file"], "", card)
    parts = {
        "knn_smote-1": radiomics[radiomics["evaluation"] == "test"].set_index("lesion_id")["probability"],
        "densenet121-1": densenet[densenet["evaluation"] == "test"].set_index("lesion_id")["probability"],
    }
    saved = BY_NAME["combined"].load(store.root / row["model_file"])
    nothing = LesionData(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), Path("."))
    scored = combined_arm.score(saved, model, nothing, parts.__getitem__)
    pd.testing.assert_series_equal(scored.sort_index(), expected.sort_index(), check_names=False)


def test_a_model_of_an_arm_that_cannot_score_here_is_refused_with_the_fix():
    stranger = RegisteredModel("toy-1", "toy", "toy", "artifacts/models/toy/toy-1.joblib", "", {})
    with pytest.raises(ScoringRefused, match="its arm 'toy' is not one that scores here .* Fix: install the module"):
        registered_arm(stranger)
    assert registered_arm(replace(stranger, arm="densenet")) is BY_NAME["densenet"]
