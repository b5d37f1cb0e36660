"""The study's models on a real pipeline run of a small synthetic cohort (24 patients).

Everything runs for real: generation, imaging, dbt, the models; the assertions recompute what
they check from the store rather than trusting the pipeline's own numbers.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.stats import t as student_t

from metorigin.core.config import RunConfig
from metorigin.core.model_files import load_model_file
from metorigin.core.store import Store
from metorigin.core.study import get_settings
from metorigin.definitions import build_definitions
from metorigin.defs.study.report import RESULT_TABLES
from metorigin.imaging.synth import SynthConfig, generate_cohort
from metorigin.report.curves import auc_from_points
from metorigin.runtime.runner import run_selection
from metorigin.study.densenet import pick_slices
from metorigin.study.evaluation import labels
from metorigin.study.radiomics_arm import feature_columns, split_effect
from metorigin.study.registry import data_hash
from metorigin.study.selection import drop_correlated

pytestmark = pytest.mark.slow

QUICK = get_settings("quick")
STUDY = SynthConfig(seed=11, scale=0.3, matrix=64, workers=2)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    cohort = generate_cohort(root / "cohort", STUDY)
    # The quick study with 1 x 5 nested-CV folds (not 2 x 5), 300 bootstrap resamples, 3 importance
    # repeats (not 10), 300 DenseNet training images an epoch (not 1000), 2 label permutations (not
    # 20) and one split besides the study's: the same steps, less repetition.
    (root / "study.yaml").write_text(
        "base: quick\nmodels: {cv_repeats: 1, bootstrap_resamples: 300, importance_repeats: 3}\n"
        "densenet: {max_train_images_per_epoch: 300}\nrobustness: {permutations: 2, split_repeats: 2}\n"
    )
    config = RunConfig(
        cohort=str(cohort),
        store=str(root / "store"),
        study_file=str(root / "study.yaml"),
        workers=2,
        densenet_epochs=1,  # the loop itself is tested in test_densenet.py
    )
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    report = run_selection(defs, instance, progress=lambda _: None)
    assert report.ok, (report.step_failures, report.failed_checks)
    yield defs, instance, Store(root / "store")


def _sql(store: Store, query: str) -> pd.DataFrame:
    with store.connect_read_only() as con:
        return con.execute(query).df()


def test_split_is_by_patient_and_shared_by_every_prediction(study):
    _, _, store = study
    split = _sql(store, "select * from patient_split")
    assert split["patient_id"].is_unique
    test_patients = set(split.loc[split["set"] == "test", "patient_id"])
    assert len(test_patients) == 8
    predictions = _sql(store, "select * from lesion_predictions")
    assert set(predictions.loc[predictions["evaluation"] == "test", "patient_id"]) == test_patients
    assert not set(predictions.loc[predictions["evaluation"] == "out_of_fold", "patient_id"]) & test_patients
    matrix = _sql(store, "select lesion_id, patient_id from training_matrix")
    per_model = predictions[predictions["evaluation"] == "test"].groupby("model_id")["lesion_id"].apply(set)
    expected = set(matrix.loc[matrix["patient_id"].isin(test_patients), "lesion_id"])
    # 16 radiomics models, 2 baselines, the DenseNet and the combined model: all on the same lesions.
    assert len(per_model) == 20 and all(lesions == expected for lesions in per_model)


def test_selection_sees_only_training_patients(study):
    _, _, store = study
    split = _sql(store, "select * from patient_split")
    matrix = _sql(store, "select * from training_matrix order by lesion_id")
    train = matrix[matrix["patient_id"].isin(split.loc[split["set"] != "test", "patient_id"])]
    importance = _sql(store, "select * from feature_importance")
    kept = importance.loc[importance["kept"]].sort_values("rank")["feature_name"]
    assert set(kept) == set(drop_correlated(train[feature_columns(train)], 0.6).kept)
    r = train[feature_columns(train)].corr().abs()
    for _, row in importance[importance["redundant_with"].notna()].iterrows():
        assert r.loc[row["feature_name"], row["redundant_with"]] == pytest.approx(row["abs_r"])
        assert row["abs_r"] > 0.6 and row["redundant_with"] in set(kept)
    assert len(importance) == len(feature_columns(matrix))
    assert (importance.sort_values("rank").dropna(subset=["rank"])["importance"].diff().dropna() <= 0).all()


def test_table3_has_16_models_with_intervals_and_models_with_their_cards(study):
    _, _, store = study
    metrics = _sql(store, "select * from model_metrics where arm = 'radiomics'")
    assert len(metrics) == 16 and set(metrics["resampler"]) == {"smote", "undersampling"}
    assert metrics["model"].nunique() == 8
    for low, point, high in (("auc_ci_low", "auc", "auc_ci_high"), ("accuracy_ci_low", "accuracy", "accuracy_ci_high")):
        assert (metrics[low] <= metrics[point]).all() and (metrics[point] <= metrics[high]).all()
    assert (metrics["auc_ci_high"] - metrics["auc_ci_low"] > 0).all()
    assert metrics["cv_folds"].eq(5).all() and metrics["cv_auc"].between(0, 1).all()  # 1 repeat x 5 folds
    assert metrics["n_test_patients"].eq(8).all()

    split = _sql(store, "select * from patient_split")
    matrix = _sql(store, "select * from training_matrix order by lesion_id")
    train = matrix[matrix["patient_id"].isin(split.loc[split["set"] != "test", "patient_id"])].reset_index(drop=True)
    for _, row in metrics.iterrows():
        assert not Path(row["model_file"]).is_absolute()  # relative to the store: a moved store finds it
        card = json.loads((store.root / row["model_file"]).with_suffix(".json").read_text())
        assert (store.root / row["model_file"]).is_file() and card["model_id"] == row["model_id"]
        assert card["seed"] == row["seed"] and card["libraries"]["xgboost"] != "not installed"
        assert card["training_data_sha256"] == data_hash(train[card["features"]], labels(train, QUICK.label))

    # Recompute one AUC from the stored per-lesion probabilities.
    predictions = _sql(store, "select * from lesion_predictions where evaluation = 'test' and arm = 'radiomics'")
    best = metrics.sort_values("auc").iloc[-1]
    mine = predictions[predictions["model_id"] == best["model_id"]]
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(mine["label"] == "pancreatic", mine["probability"]) == pytest.approx(best["auc"])


def test_densenet_trains_on_training_patients_only_and_joins_table3_with_the_combined_model(study):
    _, _, store = study
    split = _sql(store, "select * from patient_split").set_index("patient_id")["set"]
    metrics = _sql(store, "select * from model_metrics where arm in ('densenet', 'combined') order by arm")
    assert metrics["model"].tolist()[1] == "densenet121" and metrics["arm"].tolist() == ["combined", "densenet"]
    assert (metrics["auc_ci_low"] <= metrics["auc"]).all() and (metrics["auc"] <= metrics["auc_ci_high"]).all()
    assert metrics["n_test_patients"].eq(8).all()

    predictions = _sql(store, "select * from lesion_predictions where arm = 'densenet'")
    for evaluation, expected in (("validation", "validation"), ("test", "test")):
        assert set(split[predictions.loc[predictions["evaluation"] == evaluation, "patient_id"]]) == {expected}
    # The card's training-data hash is the hash of the training patients' slices, and of nothing else.
    card = json.loads(
        (store.root / metrics.set_index("arm").loc["densenet", "model_file"]).with_suffix(".json").read_text()
    )
    index = _sql(
        store,
        "select s.*, t.label from lesion_slices s join training_matrix t using (lesion_id) "
        "order by s.lesion_id, s.slice_index",
    )
    chosen = pick_slices(index, get_settings("quick").densenet.max_slices_per_lesion)
    train = chosen[chosen["patient_id"].map(split) == "train"].reset_index(drop=True)
    assert card["training_data_sha256"] == data_hash(train[["lesion_id", "slice_index"]], labels(train, QUICK.label))
    assert card["training_slices"] == len(train) and len(card["history"]) == 1
    # Its probabilities are on the training prevalence (not the class weights' balance), as it says.
    share = float(np.mean(labels(train, QUICK.label)))
    assert card["calibration"]["positive_share"] == pytest.approx(share) and 0 < share < 1
    assert metrics.set_index("arm").loc["densenet", "calibration"].startswith("odds moved")
    # The chosen epoch's validation AUC with its patient-bootstrap interval (how much it owes to them).
    row = metrics.set_index("arm").loc["densenet"]
    assert row["validation_auc_ci_low"] <= row["validation_auc"] <= row["validation_auc_ci_high"]
    assert row["epochs_within_interval"] == 1  # one epoch: the chosen one, within its own interval

    combined = _sql(store, "select * from lesion_predictions where arm = 'combined'")
    for evaluation in ("validation", "test"):  # validation: what its second threshold is chosen on
        assert set(split[combined.loc[combined["evaluation"] == evaluation, "patient_id"]]) == {evaluation}


def test_nested_cv_on_training_patients_chooses_the_best_and_every_row_has_per_class_metrics(study):
    _, _, store = study
    split = _sql(store, "select * from patient_split").set_index("patient_id")["set"]
    metrics = _sql(store, "select * from model_metrics where arm = 'radiomics'").set_index("model_id").sort_index()
    folds, held = _sql(store, "select * from cv_folds"), _sql(store, "select * from cv_predictions")
    # Nested CV on the training patients only: each training lesion held out once per repeat.
    assert set(split[held["patient_id"]]) <= {"train", "validation"}
    assert held.groupby(["model_id", "repeat"])["lesion_id"].agg(lambda ids: ids.is_unique).all()
    assert folds.groupby("model_id").size().eq(5).all()  # 1 repeat x 5 outer folds
    assert np.allclose(metrics["cv_auc"], folds.groupby("model_id")["auc"].mean().sort_index())
    # The Nadeau-Bengio interval is wider than the naive one (folds share training patients).
    naive = metrics["cv_auc_sd"] / np.sqrt(5) * student_t.ppf(0.975, 4)
    assert (metrics["cv_auc_ci_high"] - metrics["cv_auc"] > naive).all()
    assert (metrics["cv_auc_ci_low"] < metrics["cv_auc"]).all()
    # Platt scaling on the out-of-fold probabilities: on those, the mean probability is the share of
    # positive training lesions (what an unpenalised logistic fit with an intercept guarantees).
    oof = _sql(store, "select * from lesion_predictions where arm = 'radiomics' and evaluation = 'out_of_fold'")
    share = oof.groupby("model_id").apply(lambda f: (f["label"] == QUICK.label.positive).mean(), include_groups=False)
    assert np.allclose(oof.groupby("model_id")["probability"].mean(), share, atol=1e-3)

    table3 = _sql(store, "select model_id from model_metrics")["model_id"]
    intervals = _sql(store, "select * from metric_intervals")
    assert set(intervals["model_id"]) == set(table3) and set(intervals["level"]) == {"lesion", "patient"}
    chosen = intervals.dropna(subset=["threshold"]).groupby("arm")["threshold"].agg(set)
    assert chosen["radiomics"] == {"0.5", "youden (out-of-fold, training patients)"}
    assert chosen["densenet"] == {"0.5", "youden (validation patients)"}
    flagged = intervals.dropna(subset=["flag"])
    assert (flagged["ci_low"] == flagged["ci_high"]).all()
    assert set(flagged["flag"]) <= {"degenerate (n test patients = 8)"}
    unflagged = intervals[intervals["flag"].isna() & intervals["ci_low"].notna()]
    assert (unflagged["ci_low"] < unflagged["ci_high"]).all()

    baselines = _sql(store, "select * from model_metrics where arm = 'baseline' order by model")
    assert baselines["model"].tolist() == ["lesion_count", "lesion_size"] and baselines["cv_auc"].between(0, 1).all()
    assert chosen["baseline"] == chosen["radiomics"]  # fitted, calibrated and thresholded like them

    comparisons = _sql(store, "select * from model_comparisons")
    best = metrics.reset_index().sort_values(["cv_auc", "model_id"], ascending=[False, True]).iloc[0]["model_id"]
    assert set(comparisons["best_model_id"]) == {best}  # chosen by nested CV, never by a test score
    assert set(comparisons["model_id"]) == set(table3) - {best}
    assert (comparisons["p_holm"] >= comparisons["p_value"]).all() and comparisons["p_holm"].le(1).all()


def test_permutation_null_and_split_repeats_are_published_beside_table3(study):
    _, instance, store = study
    null = _sql(store, "select * from permutation_null order by permutation")
    assert list(null["labels"]) == ["observed", "permuted", "permuted"]
    observed = null.iloc[0]
    assert observed["p_value"] == (1 + (null["max_auc"].iloc[1:] >= observed["max_auc"]).sum()) / 3
    repeats = _sql(store, "select * from split_repeats")
    assert sorted(repeats["repeat"].unique()) == [0, 1] and len(repeats) == 2 * QUICK.models.n_pipelines
    # The observed round is the study's split: its test patients are Table 3's.
    split = _sql(store, "select patient_id from patient_split where set = 'test'")
    assert repeats["n_test_patients"].iloc[0] == len(split)
    metadata = instance.get_latest_materialization_event(dg.AssetKey("permutation_null")).asset_materialization.metadata
    assert metadata["p_value"].value == observed["p_value"] and "permuted 2 times" in metadata["summary"].value


def test_tables_2_and_3_and_aucs_are_in_the_ui(study):
    _, instance, _ = study
    event = instance.get_latest_materialization_event(dg.AssetKey("radiomics_metrics"))
    metadata = event.asset_materialization.metadata
    assert "| knn | smote |" in metadata["table_3"].value.replace("radiomics | ", "")
    assert isinstance(metadata["auc_knn_smote"].value, float) and 0 <= metadata["auc_knn_smote"].value <= 1
    table2 = instance.get_latest_materialization_event(dg.AssetKey("feature_importance")).asset_materialization
    assert table2.metadata["table_2"].value.startswith("| rank | feature |")


REPORT_FIGURES = ("cohort_flow", "tumour_burden", "example_lesions", "importance", "fig4_lesions", "roc", "calibration")


def _report_page(store: Store) -> Path:
    pages = list((store.artifacts / "report").glob("*/report.html"))
    assert len(pages) == 1, pages
    return pages[0]


def test_study_report_is_self_contained_and_its_figures_agree_with_the_tables(study):
    _, instance, store = study
    page = _report_page(store)
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html and not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing fetched
    for name in REPORT_FIGURES:
        assert (page.parent / f"{name}.svg").stat().st_size > 1000, name
        with Image.open(page.parent / f"{name}.png") as png:
            assert png.info["dpi"] == pytest.approx((300, 300), abs=0.5), name
    for name in ("table1", "table2", "table3"):
        assert len(pd.read_csv(page.parent / f"{name}.csv")) > 1, name
    metrics = _sql(store, "select * from model_metrics order by model_id")
    points = pd.read_csv(page.parent / "roc.csv")
    assert set(points["model_id"]) == set(metrics["model_id"])
    for _, row in metrics.iloc[[0, -1]].iterrows():  # one AUC of each level, recomputed from the figure's points
        for level, column in (("lesion", "auc"), ("patient", "patient_auc")):
            curve = points[(points["model_id"] == row["model_id"]) & (points["level"] == level)]
            assert auc_from_points(curve[curve["kind"] == "curve"]) == pytest.approx(row[column])
    cells = pd.read_csv(page.parent / "fig4_lesions.csv")
    predictions = _sql(store, "select * from lesion_predictions where evaluation = 'test' order by lesion_id, model_id")
    assert len(cells) == len(predictions)
    one = predictions.iloc[len(predictions) // 3]
    cell = cells[(cells["lesion_id"] == one["lesion_id"]) & (cells["model_id"] == one["model_id"])].iloc[0]
    truth = one["probability"] if one["label"] == QUICK.label.positive else 1 - one["probability"]
    assert cell["p_true"] == pytest.approx(truth) and cell["correct"] == (one["predicted_label"] == one["label"])
    event = instance.get_latest_materialization_event(dg.AssetKey("study_report"))
    assert event.asset_materialization.metadata["report"].value == str(page)
    assert event.run_id in html and f"<td>seed</td><td>{QUICK.seed}</td>" in html


def test_study_report_renders_in_chromium(study, tmp_path):
    from playwright.sync_api import sync_playwright

    _, _, store = study
    browser_path = shutil.which("chromium")
    assert browser_path, "no chromium on PATH: `make chromium` installs Debian's package"
    page_path = _report_page(store)
    n_models = len(_sql(store, "select model_id from model_metrics"))
    n_lesions = len(_sql(store, "select distinct lesion_id from lesion_predictions where evaluation = 'test'"))
    test_scans = _sql(
        store, "select scan_id from scans join patient_split using (patient_id) where set = 'test' and included"
    )
    errors, fetched = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=browser_path, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: fetched.append(request.url))
            page.goto(page_path.as_uri())
            roc_lines = page.locator("[id^=roc-lesion-]").count()
            fig4_cells = page.locator("#fig4-cells path").count()
            # The QC gallery: one decoded picture per test scan.
            qc = page.eval_on_selector_all("#gallery-qc img", "images => images.map(i => i.naturalWidth)")
            page.screenshot(path=tmp_path / "report.png")
        finally:
            browser.close()
    assert errors == [] and [url for url in fetched if not url.startswith(("file:", "data:"))] == []
    assert roc_lines == n_models and fig4_cells == n_lesions * n_models
    assert len(qc) == len(test_scans) and min(qc) > 100
    with Image.open(tmp_path / "report.png") as shot:
        pixels = np.asarray(shot.convert("L"))
    assert pixels.std() > 20 and len(np.unique(pixels)) > 50  # text, tables and a figure: not a blank page


def test_report_without_study_results_or_with_one_class_says_why(study, tmp_path, capsys):
    from metorigin.cli.main import main

    _, _, store = study
    # A store with only the feature store: the study's tables dropped from a copy of its DuckDB file.
    bare = Store(tmp_path / "bare")
    bare.duckdb_path.parent.mkdir(parents=True)
    shutil.copyfile(store.duckdb_path, bare.duckdb_path)
    with duckdb.connect(str(bare.duckdb_path)) as con:
        for table in STUDY_TABLES:
            con.execute(f"drop table {table}")
    assert main(["report", "--store", str(bare.root), "--out", str(tmp_path / "bare.html")]) == 0
    printed = capsys.readouterr().out
    assert "incomplete: Feature selection" in printed and "incomplete: Model performance" in printed
    html = (tmp_path / "bare.html").read_text(encoding="utf-8")
    for rendered in ('id="table-table1"', 'id="figure-cohort_flow"', 'id="figure-tumour_burden"'):
        assert rendered in html, rendered
    assert "model_metrics" in html and "--select group:study" in html and "<svg" in html

    # One class among the test patients, shared anonymously: the ROC sections say why they are empty,
    # and no id, image, path or reviewer's name is in the page or its files.
    one_class = Store(tmp_path / "one")
    shutil.copytree(store.root, one_class.root, ignore=shutil.ignore_patterns("report", ".dagster"))
    with duckdb.connect(str(one_class.duckdb_path)) as con:
        con.execute(f"delete from lesion_predictions where evaluation = 'test' and label = '{QUICK.label.classes[0]}'")
        con.execute(
            "update scans set included = false, exclusion_reason = 'failed image QC (dr who, 2026-11-20): ' || "
            "scan_id || ' of ' || patient_id where scan_id = (select min(scan_id) from scans where included)"
        )
    assert main(["report", "--store", str(one_class.root), "--anonymous"]) == 0
    page = Path(capsys.readouterr().out.split("report: ")[-1].strip())
    html = page.read_text(encoding="utf-8")
    assert "The test patients hold one class only" in html and 'id="figure-example_lesions"' not in html
    assert "<img" not in html and "failed image QC (qc.csv),1" in (page.parent / "cohort_flow.csv").read_text()
    written = html + "".join(f.read_text(encoding="utf-8") for f in page.parent.glob("*.[cs][sv][vg]"))
    ids = _sql(store, "select patient_id, lesion_id from lesions")
    leaks = [i for i in {*ids["patient_id"], *ids["lesion_id"], "dr who", str(store.root)} if i in written]
    assert leaks == [] and "patient-001" in written and "/radiomics_params.yaml" not in html


# The study's tables among those the report reads (the others are the feature store's), and cv_folds.
STUDY_TABLES = (*(t for t in RESULT_TABLES if t not in ("cohort_characteristics", "tumor_burden")), "cv_folds")


# What the study's Python steps write to the lake. Table 3 (model_metrics) is the union of the three
# *_metrics tables (sql/models/results/model_metrics.sql), lesion_predictions that of the predictions.
# The radiomics arm's Python steps (the DenseNet's determinism, a resumed training equal to a straight
# one, is tested in test_densenet.py, on a smaller network and far faster than retraining it here).
RADIOMICS_OUTPUTS = (
    "patient_split",
    "feature_importance",
    "radiomics_metrics",
    "radiomics_predictions",
    "radiomics_cv_folds",
    "radiomics_cv_predictions",
)


def test_same_seed_same_metrics(study):
    """The split, Table 2 and the radiomics rows of Table 3 again, on the same training matrix and
    forced (nothing changed, so an ordinary run would skip them): the same tables, row for row."""
    defs, instance, store = study
    before = {name: store.read_lake(name) for name in RADIOMICS_OUTPUTS}
    selection = " or ".join(f"key:{name}" for name in RADIOMICS_OUTPUTS)
    report = run_selection(defs, instance, selection=selection, progress=lambda _: None, force=True)
    assert report.ok, report.step_failures
    assert set(report.materialized) == set(RADIOMICS_OUTPUTS)
    for name in RADIOMICS_OUTPUTS:
        pd.testing.assert_frame_equal(before[name], store.read_lake(name), obj=name)
    # ... and those rows are the published Table 3's radiomics rows.
    published = _sql(store, "select * from model_metrics where arm = 'radiomics'").set_index("model_id").sort_index()
    rerun = store.read_lake("radiomics_metrics").set_index("model_id").sort_index()
    columns = ["auc", "auc_ci_low", "auc_ci_high", "accuracy", "patient_auc", "training_data_sha256"]
    assert len(published) == 16
    pd.testing.assert_frame_equal(published[columns], rerun[columns], check_dtype=False)


def test_leakage_guard_lesion_split_scores_higher_than_patient_split(study):
    """The generator gives each patient its own noise and enhancement: a model that has seen other
    lesions of a test lesion's patient scores better than it should. The pipeline splits by patient."""
    _, instance, store = study
    matrix = _sql(store, "select * from training_matrix order by lesion_id")
    features = _sql(store, "select feature_name from feature_importance where kept")["feature_name"].tolist()
    scores = split_effect(matrix, features, QUICK.models, QUICK.label, seed=5)
    assert scores["lesion_split_auc"] > scores["patient_split_auc"] + 0.03, scores
    # What the pipeline recorded for its own run, on its own cohort, says the same.
    recorded = instance.get_latest_materialization_event(dg.AssetKey("radiomics_metrics")).asset_materialization
    assert recorded.metadata["lesion_split_auc"].value > recorded.metadata["patient_split_auc"].value
    # And its predictions never put one patient's lesions on both sides.
    predictions = _sql(store, "select patient_id, arm, evaluation from lesion_predictions")
    sides = predictions.groupby(["arm", "patient_id"])["evaluation"].nunique()
    assert sides.eq(1).all(), sides[sides > 1]


def test_a_copied_store_answers_and_loads_its_models_with_the_original_gone(study, tmp_path):
    _, _, store = study
    copy = tmp_path / "moved"
    shutil.copytree(store.root, copy)
    away = store.root.with_name(store.root.name + "-away")
    store.root.rename(away)  # the original is gone while the copy is used
    try:
        with Store(copy).connect_read_only() as con:
            metrics = con.execute("select arm, model_file from model_metrics").df().set_index("arm")
            assert con.execute("select count(*) from lesion_features").fetchone()[0] > 0
            # Nothing in the published file names the old place: tables only, relative paths.
            assert con.execute("select count(*) from duckdb_views() where not internal").fetchone()[0] == 0
            text_columns = con.execute(
                "select table_name, column_name from information_schema.columns where data_type = 'VARCHAR'"
            ).fetchall()
            for table, column in text_columns:
                query = f'select count(*) from "{table}" where "{column}" like ?'
                assert con.execute(query, [f"%{store.root}%"]).fetchone()[0] == 0, (table, column)
        pipeline = load_model_file(copy / metrics.loc["radiomics", "model_file"].iloc[0])
        assert hasattr(pipeline, "predict_proba")
        weights = torch.load(copy / metrics.loc["densenet", "model_file"], weights_only=True)
        assert any(name.endswith("weight") for name in weights)
    finally:
        away.rename(store.root)
