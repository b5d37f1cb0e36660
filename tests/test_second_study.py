"""The second example study end to end: another protocol on the same kind of cohort, as a file, no code."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from base.store import Store
from base.study import get_settings, load_study, with_run_choices
from tests.test_cli import _cli

SECOND = Path(__file__).resolve().parents[1] / "examples" / "sharp_kernels_colorectal_positive.yaml"


@pytest.mark.slow
def test_the_second_example_study_runs_end_to_end(tmp_path):
    cohort, store_dir = tmp_path / "cohort", tmp_path / "store"
    assert _cli("synth", "--out", cohort, "--scale", "0.05", "--matrix", "64", "--seed", "5").returncode == 0
    scans_csv = pd.read_csv(cohort / "scans.csv", dtype=str, keep_default_na=False)
    scans_csv.loc[scans_csv["scan_id"] == "S0001", "kernel"] = "B70f"  # a sharp-kernel series: the paper excludes it
    scans_csv.to_csv(cohort / "scans.csv", index=False)
    run = _cli(
        "run", "--cohort", cohort, "--store", store_dir, "--study", SECOND, "--densenet-epochs", "1", "--workers", "2"
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    study = with_run_choices(load_study(SECOND), densenet_epochs=1)
    assert f"study: {study.name} (hash {study.study_hash()}" in run.stdout
    store = Store(store_dir)
    with store.connect_read_only() as con:
        scans = con.execute("select scan_id, kernel, included, exclusion_reason from scans").df()
        lesions = con.execute("select lesion_id, max_diameter_mm, included, settings_hash from lesions").df()
        matrix = con.execute("select lesion_id from training_matrix").df()
        metrics = con.execute("select arm, model, resampler, model_file from model_metrics").df()
        predictions = con.execute("select probability, predicted_label from lesion_predictions").df()
        kernels = con.execute("select value from study_settings where key = 'inclusion.kernels'").fetchone()[0]
    # Inclusion: the sharp-kernel series the seed paper excludes are in.
    assert scans.loc[scans["kernel"] == "B70f", "included"].all() and (scans["kernel"] == "B70f").any()
    # Lesion rule: 10 mm, with the reason on the smaller ones, and only large lesions reach the models.
    small = lesions[lesions["max_diameter_mm"] < 10]
    assert len(small) and not small["included"].any()
    assert set(matrix["lesion_id"]) <= set(lesions.loc[lesions["included"], "lesion_id"])
    assert (lesions.loc[lesions["included"], "max_diameter_mm"] >= 10).all()
    assert set(lesions["settings_hash"]) == {study.step_hash("lesions")} != {get_settings("quick").step_hash("lesions")}
    # Models: three classifiers with SMOTE only, the DenseNet and the combined row; colorectal is positive.
    radiomics = metrics[metrics["arm"] == "radiomics"]
    assert sorted(radiomics["model"]) == ["knn", "logistic_regression", "random_forest"]
    assert set(radiomics["resampler"]) == {"smote"} and len(metrics) == 5
    assert ((predictions["probability"] >= 0.5) == (predictions["predicted_label"] == "colorectal")).all()
    card = json.loads(Path(radiomics["model_file"].iloc[0]).with_suffix(".json").read_text())
    assert card["positive_class"] == "colorectal" and card["settings_hash"] == study.step_hash("radiomics_models")
    assert json.loads(kernels) == ["B30s", "B70f"]
    assert pd.notna(metrics["model_file"]).all()
