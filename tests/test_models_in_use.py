"""The trained models in use (issue 15): an unlabelled patient, the registry and its promotions,
per-scan scoring with the frozen promoted models, a scan added after training, and external
validation on the store's own cohort and on a second synthetic cohort; and a run killed with
SIGKILL in the dbt build and in the DenseNet's training, and a training patient forgotten (issue
28), which need such a store.

A small study of its own (9 patients, two classifiers with undersampling (SMOTE needs more
lesions of a class than this cohort's folds hold), a one-epoch DenseNet): what is
checked is that nothing is refitted and every number is traceable, not how good the models are.
Everything runs for real: generation, imaging, dbt, the models, the sensor's run requests.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from metorigin.arms import ARMS
from metorigin.core.config import RunConfig, activate
from metorigin.core.model_files import load_model_file
from metorigin.core.store import Store
from metorigin.core.study_file import load_study
from metorigin.definitions import build_definitions
from metorigin.defs.common.partitions import scan_partitions
from metorigin.defs.feature_store.sensors import feature_store_after_a_batch
from metorigin.defs.imaging.sensors import new_scans_sensor
from metorigin.imaging.fingerprints import cohort_fingerprint
from metorigin.imaging.synth import SynthConfig, append_patients, generate_cohort
from metorigin.inference.registry import (
    PromotionError,
    append_promotions,
    deleted_promoted,
    promoted_models,
    read_promotions,
    registry_models,
)
from metorigin.runtime.dead_runs import slot_holders
from metorigin.runtime.execution import RunReport, executor, reconstructable_job
from metorigin.runtime.runner import (
    external_validation,
    promote,
    run_selection,
    validate_with,
)
from metorigin.study.combined import best_radiomics_model
from metorigin.study.evaluation import labels
from metorigin.study.evaluation import test_metrics as table3_metrics  # not `test_*`: pytest would collect it
from metorigin.study.scoring import ScoringRefused, load, require_features, require_inputs
from tests.test_cli import METORIGIN, _cli

pytestmark = pytest.mark.slow

COHORT = SynthConfig(seed=21, scale=0.1, matrix=64, workers=2)  # 5 colorectal, 4 pancreatic patients
UNLABELLED = "P002"  # a colorectal patient whose label the fixture leaves empty in patients.csv
RESAMPLES = 200
STUDY_FILE = (
    "base: quick\n"
    "models: {classifiers: [logistic_regression, knn], resamplers: [undersampling], cv_repeats: 1,\n"
    "         cv_folds: 3,"
    f" bootstrap_resamples: {RESAMPLES}, importance_repeats: 2}}\n"
    "densenet: {epochs: 1, max_train_images_per_epoch: 100, image_size: 48}\n"
    "robustness: {permutations: 1, split_repeats: 1}\n"
    # The last test forgets a training patient and retrains: one test patient per class leaves
    # three of each to learn from, so two of a class remain.
    "split: {test_patients_per_class: 1}\n"
    "retrain_on_forget: true\n"
)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("in_use")
    cohort = generate_cohort(root / "cohort", COHORT)
    patients = pd.read_csv(cohort / "patients.csv", dtype=str, keep_default_na=False)
    assert patients.loc[patients["patient_id"] == UNLABELLED, "primary_site"].tolist() == ["colorectal"]
    patients.loc[patients["patient_id"] == UNLABELLED, "primary_site"] = ""  # scored, never learnt from
    patients.to_csv(cohort / "patients.csv", index=False)
    (root / "study.yaml").write_text(STUDY_FILE)
    # Persistent (sensors need one), and not `instance_for_test` yielded from a fixture: its context
    # state would leak into the next module of this worker (see test_dagster_cohort's `instance`).
    (root / "dagster_home").mkdir()
    instance = dg.DagsterInstance.local_temp(str(root / "dagster_home"))
    config = RunConfig(cohort=str(cohort), store=str(root / "store"), workers=2, study_file=str(root / "study.yaml"))
    defs = build_definitions(config)
    report = run_selection(defs, instance, progress=lambda _: None)
    assert report.ok, (report.step_failures, report.failed_checks)
    yield defs, instance, Store(root / "store")
    instance.dispose()


def _sql(store: Store, query: str) -> pd.DataFrame:
    with store.connect_read_only() as con:
        return con.execute(query).df()


def _settings(store: Store):
    return load_study(store.root.parent / "study.yaml")


def _n_models(store: Store) -> int:
    return int(_sql(store, "select count(*) n from model_metrics")["n"][0])


def _cards(store: Store) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((store.artifacts / "models").rglob("*.json"))]


def test_an_unlabelled_patient_is_measured_and_stored_but_never_learnt_from(study):
    _, _, store = study
    label = _sql(store, f"select label from patients where patient_id = '{UNLABELLED}'")["label"]
    assert len(label) == 1 and label.isna().all()
    assert _sql(store, f"select count(*) n from lesion_features where patient_id = '{UNLABELLED}'")["n"][0] > 0
    for table in ("training_matrix", "patient_split"):
        assert _sql(store, f"select count(*) n from {table} where patient_id = '{UNLABELLED}'")["n"][0] == 0, table
    cards = _cards(store)
    learnt = [c for c in cards if "training_patient_ids" in c]
    assert {c["arm"] for c in learnt} == {arm.name for arm in ARMS}
    for card in learnt:
        assert UNLABELLED not in card["training_patient_ids"] + card.get("validation_patient_ids", [])
    table1 = _sql(store, "select cohort, value from cohort_characteristics where characteristic = 'n'")
    assert table1.set_index("cohort")["value"].get("unlabelled") == 1


def _model_files(store: Store) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (store.artifacts / "models").rglob("*-*.*")
        if p.suffix in (".skops", ".pt")
    }


def _promote(defs, instance, ids: list[str], why: str = "the test's choice") -> RunReport:
    return promote(defs, instance, {"promote": ids, "why": why}, RunReport())


@pytest.fixture(scope="module")
def promoted(study):
    """The best radiomics model by nested CV, the DenseNet and the combined model promoted, and the
    run after it: every scan scored."""
    defs, instance, store = study
    metrics = _sql(store, "select * from model_metrics")
    ids = [
        best_radiomics_model(metrics[metrics["arm"] == "radiomics"])["model_id"],
        *metrics.loc[metrics["arm"].isin(["densenet", "combined"]), "model_id"],
    ]
    files = _model_files(store)
    assert _promote(defs, instance, ids).ok
    scored = run_selection(defs, instance, progress=lambda _: None)
    assert scored.ok, (scored.step_failures, scored.failed_checks)
    return ids, files, scored


def test_promotions_are_logged_and_a_wrong_one_is_refused(study, promoted):
    defs, instance, store = study
    ids, _, _ = promoted
    registry = _sql(store, "select * from models")
    assert (
        len(registry) == _n_models(store) and registry["model_id"].is_unique and registry["file_sha256"].notna().all()
    )
    assert sorted(registry.loc[registry["promoted"], "model_id"]) == sorted(ids)
    log = _sql(store, 'select model_id, arm, who, "when", why from model_promotions')
    assert sorted(log["model_id"]) == sorted(ids) and set(log["why"]) == {"the test's choice"}
    assert log["who"].str.len().gt(0).all()
    baseline = registry.loc[registry["arm"] == "baseline", "model_id"].iloc[0]
    for wrong, because in (
        (["no-such-model"], "no model no-such-model in the registry"),
        ([baseline], "at most one model per arm"),
        ([ids[0], ids[0]], "at most one model per arm"),
    ):
        report = _promote(defs, instance, wrong)
        assert not report.ok and because in " ".join(report.step_failures), report.step_failures
    assert _promote(defs, instance, [ids[0]], why=" ").step_failures  # a promotion needs a reason
    assert len((store.root / "promotions.jsonl").read_text().splitlines()) == 3  # the refused ones left no line


def test_every_scan_is_scored_by_the_frozen_promoted_models(study, promoted):
    defs, _, store = study
    ids, files, scored = promoted
    assert _model_files(store) == files  # nothing refitted, nothing rewritten
    study = dg.AssetSelection.groups("study").resolve(defs.resolve_asset_graph())
    assert not {k.to_user_string() for k in study if len(k.path) == 1} & set(scored.materialized)  # no model fitted
    included = _sql(store, "select scan_id from scans where included")["scan_id"]
    assert scored.materialized["scan_predictions"] == len(included)
    rows = _sql(store, "select * from scan_predictions")
    assert set(rows["model_id"]) == set(ids) and rows["settings_hash"].notna().all()
    cards = {c["model_id"]: c for c in _cards(store)}
    assert all(cards[m]["settings_hash"] == h for m, h in zip(rows["model_id"], rows["settings_hash"]))
    # The test patients' lesions get the probabilities Table 3 was computed from: the same frozen models.
    test = _sql(store, "select model_id, lesion_id, probability from lesion_predictions where evaluation = 'test'")
    both = rows.merge(test, on=["model_id", "lesion_id"], suffixes=("", "_table3"))
    assert len(both) == len(test[test["model_id"].isin(ids)]) > 0
    # Exactly for the radiomics models; to float32's precision for the DenseNet and the combined model
    # on it: a scan's slices are a batch of their own here, and a batch's composition changes the
    # order of the network's sums (seen: 1e-7 on this machine, CPU).
    network = both["model_id"].str.contains("densenet")
    exact, close = both[~network], both[network]
    assert np.allclose(exact["probability"], exact["probability_table3"], rtol=0, atol=1e-12) and len(exact)
    assert np.allclose(close["probability"], close["probability_table3"], rtol=0, atol=1e-6) and len(close)
    calls = _sql(store, f"select * from patient_predictions where patient_id = '{UNLABELLED}'")
    assert set(calls["arm"]) == {"radiomics", "densenet", "combined"}
    assert set(calls["patient_status"]) == {"unlabelled"} and calls["label"].isna().all()
    assert calls["predicted_label"].isin(_settings(store).label.classes).all()
    seen = _sql(store, "select patient_status, count(*) n from patient_predictions group by 1")
    assert set(seen["patient_status"]) == {"unlabelled", "seen in training", "not seen"}


def test_rescoring_a_scan_gives_identical_probabilities(study, promoted):
    defs, instance, store = study
    scan = _sql(store, f"select scan_id from scans where patient_id = '{UNLABELLED}' and included")["scan_id"][0]
    before = store.read_lake("scan_predictions", [scan])
    report = RunReport()
    executor(defs.resolve_job_def, instance, report)("process_scan", {dg.AssetKey("scan_predictions")}, scan)
    assert report.ok
    pd.testing.assert_frame_equal(store.read_lake("scan_predictions", [scan]), before)


def test_a_model_trained_under_other_settings_or_a_changed_file_is_refused(study, promoted, tmp_path):
    _, _, store = study
    ids, _, _ = promoted
    registry = registry_models(store)
    model = registry[ids[0]]
    other = {step: {"another-hash"} for step in model.input_settings}
    with pytest.raises(ScoringRefused, match="trained on .* settings .* Fix: score with a model trained under"):
        require_inputs(model, other)
    wide = _sql(store, "select * from training_matrix")
    with pytest.raises(ScoringRefused, match="features are not in the feature store"):
        require_features(model, [c for c in wide.columns if c != model.card["features"][0]])
    copy = tmp_path / model.model_file
    copy.parent.mkdir(parents=True)
    copy.write_bytes((store.root / model.model_file).read_bytes() + b"\0")
    with pytest.raises(ScoringRefused, match="not the one registered"):
        load(tmp_path, model)


def test_validating_on_the_store_own_cohort_reproduces_its_test_probabilities(study, promoted):
    defs, instance, store = study  # its feature store is built: the validation run alone (`validate` runs both)
    assert external_validation(defs, instance, store.root, RunReport()).ok
    external = _sql(store, "select * from external_predictions")
    table3 = _sql(store, "select model_id, lesion_id, probability from lesion_predictions where evaluation = 'test'")
    both = external.merge(table3, on=["model_id", "lesion_id"], suffixes=("", "_table3"))
    assert both["model_id"].nunique() == _n_models(store) and len(both) == len(table3)
    # Exactly for the radiomics models; to float32's precision for the DenseNet and the combined model
    # on it: a scan's slices are a batch of their own here, and a batch's composition changes the
    # order of the network's sums (seen: 1e-7 on this machine, CPU).
    network = both["model_id"].str.contains("densenet")
    exact, close = both[~network], both[network]
    assert np.allclose(exact["probability"], exact["probability_table3"], rtol=0, atol=1e-12) and len(exact)
    assert np.allclose(close["probability"], close["probability_table3"], rtol=0, atol=1e-6) and len(close)
    assert set(external["models_store"]) == {"."}


def test_external_validation_on_a_second_cohort_uses_the_frozen_models(
    study, promoted, tiny_cohort, tmp_path, monkeypatch
):
    _, _, store = study
    files = _model_files(store)
    study_file = str(store.root.parent / "study.yaml")  # the same study file as store A
    config_b = RunConfig(cohort=str(tiny_cohort), store=str(tmp_path / "b"), workers=2, study_file=study_file)
    defs_b = build_definitions(config_b)  # another seed: another centre
    with dg.instance_for_test() as instance_b:
        report = validate_with(defs_b, instance_b, store.root)
    assert report.ok, (report.step_failures, report.failed_checks)
    other = Store(tmp_path / "b")
    metrics = _sql(other, "select * from external_metrics").set_index("model_id")
    predictions = _sql(other, "select * from external_predictions")
    assert len(metrics) == _n_models(store) and set(predictions["models_store"]) == {str(store.root)}
    # Table 3's numbers recomputed from the stored probabilities ...
    for model_id, rows in predictions.groupby("model_id"):
        again = table3_metrics(
            rows.assign(y_true=labels(rows, _settings(store).label)), RESAMPLES, _settings(store).seed
        )
        for column in ("auc", "auc_ci_low", "auc_ci_high", "accuracy", "patient_auc"):
            assert again[column] == pytest.approx(metrics.loc[model_id, column], abs=1e-12), (model_id, column)
    # ... and the probabilities from the frozen model file itself, loaded here.
    matrix = _sql(other, "select * from training_matrix order by lesion_id")
    best = metrics[metrics["arm"] == "radiomics"].sort_values("cv_auc").index[-1]
    card = json.loads((store.root / metrics.loc[best, "model_file"]).with_suffix(".json").read_text())
    frozen = load_model_file(store.root / metrics.loc[best, "model_file"]).predict_proba(matrix[card["features"]])[:, 1]
    ours = predictions[predictions["model_id"] == best].set_index("lesion_id").loc[matrix["lesion_id"], "probability"]
    assert np.array_equal(ours.to_numpy(), frozen)
    assert _model_files(store) == files
    (page,) = (other.artifacts / "report").glob("external-*/report.html")  # its figures, as the study report's
    text = page.read_text(encoding="utf-8")
    assert "Table 3, external validation" in text and text.count("<svg") >= 3
    assert {"roc.csv", "calibration.csv", "fig4_lesions.csv"} <= {p.name for p in page.parent.iterdir()}
    listing = _cli("models", "list", "--store", store.root)
    assert listing.returncode == 0 and "3 promoted (combined, densenet, radiomics)" in listing.stdout


def test_a_scan_added_after_training_is_scored_by_a_sensor_launched_run(study, promoted):
    defs, instance, store = study
    ids, files, _ = promoted
    cohort = store.root.parent / "cohort"
    (new_patient,) = append_patients(cohort, 1, seed=23, unlabelled=True)
    trained = instance.get_latest_materialization_event(dg.AssetKey("radiomics_metrics")).run_id

    def tick(cursor=None):
        with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=defs.resources) as c:
            return new_scans_sensor(c)

    # The runs below are reconstructed as a code location's are, from the process's configuration:
    # this store's (an earlier test of the module built another store's definitions).
    activate(defs.resources["settings"].run_config())

    first = tick()
    assert [r.job_name for r in first.run_requests] == ["ingest_cohort"]
    (ingest,) = first.run_requests
    instance.add_dynamic_partitions(scan_partitions.name, list(first.dynamic_partitions_requests[0].partition_keys))
    assert dg.execute_job(reconstructable_job("ingest_cohort"), instance, tags=ingest.tags).success
    (batch,) = tick(cursor=cohort_fingerprint(cohort)).run_requests
    new_scans = store.read_lake("scans").query("patient_id == @new_patient")["scan_id"].tolist()
    assert batch.job_name == "process_scans"
    assert batch.run_config["ops"]["process_scan_batch"]["config"]["scans"] == sorted(new_scans)
    run = dg.execute_job(reconstructable_job("process_scans"), instance, run_config=batch.run_config, tags=batch.tags)
    assert run.success
    scored = store.read_lake("scan_predictions", sorted(new_scans))
    assert set(scored["model_id"]) == set(ids) and scored["probability"].between(0, 1).all()
    assert instance.get_latest_materialization_event(dg.AssetKey("radiomics_metrics")).run_id == trained
    assert _model_files(store) == files


# Killed runs (issue 28): here, because they need a trained store with a one-epoch DenseNet, and this
# module's is the cheapest. The training matrix's dbt build (the smallest dbt step) and the DenseNet,
# forced, through the CLI: once to completion, and once killed (SIGKILL) in dbt's build and again in
# the DenseNet's training.
REBUILD = (
    "--select",
    "key:feature_store/training_matrix or key:densenet_metrics or key:densenet_predictions",
    "--force",
)


def _cli_run(store: Store, *, kill_at: str | None = None) -> tuple[str, float]:
    """`metorigin run` on the module's store (its own instance, `<store>/.dagster`): its output and
    its wall time; killed with SIGKILL the moment its output matches `kill_at`."""
    root = store.root.parent
    command = [METORIGIN, "run", "--cohort", root / "cohort", "--store", store.root, "--study", root / "study.yaml"]
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("METORIGIN_", "DAGSTER_HOME"))}
    start = time.monotonic()
    process = subprocess.Popen(
        [*map(str, command), "--workers", "2", *REBUILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        encoding="utf-8",
        env=environment,
    )
    lines = []
    try:
        for line in process.stdout:
            print(line, end="")  # shown when the test fails
            lines.append(line)
            if kill_at and re.search(kill_at, line):
                process.send_signal(signal.SIGKILL)
                break
        process.wait(timeout=300)
    finally:
        process.kill()
        process.wait()
    output = "".join(lines)
    assert (process.returncode == -signal.SIGKILL) if kill_at else (process.returncode == 0), output[-3000:]
    return output, time.monotonic() - start


def _rebuilt(store: Store) -> dict[str, int]:
    """A digest of every feature-store table and of the DenseNet's predictions."""
    with store.connect_read_only() as con:
        names = con.execute("select table_name from information_schema.tables order by 1").fetchall()
        tables = {name: con.execute(f'select * from "{name}"').df() for (name,) in names}
    tables["densenet_predictions"] = store.read_lake("densenet_predictions")
    return {
        name: int(pd.util.hash_pandas_object(frame.sort_values(list(frame.columns)), index=False).sum())
        for name, frame in tables.items()
    }


def test_a_run_killed_in_dbt_or_in_densenet_training_never_blocks_the_store(study, promoted):
    defs, _, store = study
    resume = store.artifact_path("models", "densenet") / "checkpoint.pt"
    resume.unlink(missing_ok=True)  # the DenseNet trains from its first epoch, not from the fixture's last
    _, clean_s = _cli_run(store)
    expected = _rebuilt(store)
    instance = dg.DagsterInstance.from_config(str(store.root / ".dagster"))

    _cli_run(store, kill_at=r"START sql table model main.training_matrix")  # in dbt's build, holding its slot
    (ghost,) = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    assert ghost.job_name == "build_feature_store" and slot_holders(instance) == [ghost.run_id]

    resume.unlink(missing_ok=True)
    output, _ = _cli_run(store, kill_at=r"DenseNet-121 on \d+ training")  # the dbt build done, in the training
    assert f"note: run {ghost.run_id} (build_feature_store): its process (pid {ghost.tags['metorigin/pid']}" in output
    assert "its concurrency slots freed" in output
    (ghost,) = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    assert ghost.job_name == "run_study"

    # The feature store's sensor, which waited on "1 run(s) in flight" at every tick, ends the ghost.
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources) as context:
        tick = feature_store_after_a_batch(context)
    assert not (isinstance(tick, dg.SkipReason) and (tick.skip_message or "").startswith("waiting:")), tick
    ended = instance.get_run_by_id(ghost.run_id)
    assert ended.status == dg.DagsterRunStatus.FAILURE and not instance.get_runs(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
    )

    resume.unlink(missing_ok=True)
    output, rerun_s = _cli_run(store)
    assert "2 run(s): succeeded" in output, output[-2000:]  # the training matrix, the DenseNet
    assert _rebuilt(store) == expected
    # The "at most 1.5x the clean run" is a speed target: reported here, never asserted (a
    # timed test fails on a busy machine; speed targets belong in benchmarks/).
    print(f"\nclean run {clean_s:.1f} s, re-run after the kills {rerun_s:.1f} s: {rerun_s / clean_s:.2f}x")
    instance.dispose()


# Erasure reaching the models (issue 28, item 3), last: it changes the store. A k-NN keeps its
# training rows whole (scaled), so the search below finds a training patient's feature vectors in it;
# after `forget` (the study file says `retrain_on_forget: true`), no model file holds them.


def _arrays(value, depth: int = 0):
    """Every floating-point array inside a loaded model: estimators' attributes, steps, containers."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _arrays(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _arrays(item, depth + 1)
    elif hasattr(value, "__dict__") and depth < 8:
        yield from _arrays(vars(value), depth + 1)


def _rows_in_model(path, card: dict, rows: pd.DataFrame) -> int:
    """How many of `rows` (training-matrix rows) the model file holds, as they are or as each step of
    its pipeline passes them on (the k-NN keeps them scaled). Models fed with no feature vectors hold
    none: the DenseNet (slices) and the combined one (two probabilities)."""
    features = card.get("features")
    if path.suffix == ".pt" or not isinstance(features, list) or not set(features) <= set(rows.columns):
        return 0
    model = load_model_file(path)
    raw = rows[features]
    forms = [raw.to_numpy(dtype=float)]
    pipeline = getattr(model, "pipeline", None)
    for k in range(1, len(pipeline.steps) if pipeline is not None else 0):
        if all(hasattr(step, "transform") for _, step in pipeline.steps[:k]):
            forms.append(np.asarray(pipeline[:k].transform(raw), dtype=float))
    return max(_matches(list(_arrays(model)), form) for form in forms)


def _matches(arrays: list[np.ndarray], rows: np.ndarray) -> int:
    found = 0
    for array in arrays:
        if array.ndim == 2 and len(rows) and array.shape[1] == rows.shape[1]:
            same = np.isclose(array[:, None, :], rows[None, :, :], rtol=1e-9, atol=1e-12).all(axis=2)
            found = max(found, int(same.any(axis=0).sum()))
    return found


def _models_holding(store: Store, rows: pd.DataFrame) -> dict[str, int]:
    """model id -> how many of `rows` its file holds, over every model file left in the store."""
    held = {}
    for card_path in sorted((store.artifacts / "models").rglob("*.json")):
        card = json.loads(card_path.read_text())
        for path in card_path.parent.glob(f"{card_path.stem}.*"):
            if path.suffix in (".skops", ".pt"):
                held[card["model_id"]] = _rows_in_model(path, card, rows)
    return held


def test_forgetting_a_training_patient_deletes_every_model_that_learnt_from_them(study, promoted):
    defs, instance, store = study
    split = _sql(store, "select patient_id, label, set from patient_split order by patient_id")
    matrix = _sql(store, "select * from training_matrix")
    learners = split[split["set"] != "test"]
    # Of the class with more training patients: the retrained study still has two of each class.
    larger = learners["label"].value_counts().idxmax()
    training = learners.loc[(learners["set"] == "train") & (learners["label"] == larger), "patient_id"]
    rows_of = {pid: matrix[matrix["patient_id"] == pid] for pid in training}
    before = {c["model_id"]: c for c in _cards(store)}
    knn = next(m for m in before if m.startswith("knn_"))
    # A store trained before the registry had `removed` still promotes (dbt stages the column as null).
    store.write_lake("models", store.read_lake("models").drop(columns="removed"))
    assert _promote(defs, instance, [knn]).ok
    # The search finds a training patient's vectors in the k-NN (those undersampling kept): forget the most held.
    held = {pid: _models_holding(store, rows)[knn] for pid, rows in rows_of.items()}
    gone = max(held, key=held.get)
    assert held[gone] > 0, held

    environment = {k: v for k, v in os.environ.items() if not k.startswith(("METORIGIN_", "DAGSTER_HOME"))}
    forget = subprocess.run(
        [METORIGIN, "forget", "--store", store.root, "--patient", gone, "--why", "consent withdrawn"],
        capture_output=True,
        encoding="utf-8",
        env=environment,
    )
    output = forget.stdout + forget.stderr
    assert forget.returncode == 0, output[-3000:]
    assert f"models deleted, having learnt from the patient ({len(before)}; their cards kept as tombstones)" in output
    assert "retraining the study without the patient (the study file's retrain_on_forget)" in output

    # Every model of the old training is a tombstone: its file gone, its card what it was, not what it learnt.
    for model_id, card in before.items():
        (tombstone,) = [json.loads(p.read_text()) for p in (store.artifacts / "models").rglob(f"{model_id}.json")]
        assert tombstone["removed"]["why"] == "a patient it learnt from was erased (consent withdrawn)"
        assert not {"calibration", "feature_reference", "history"} & set(tombstone)
        assert gone not in json.dumps(tombstone) and tombstone["seed"] == card["seed"]
        assert not [p for p in (store.artifacts / "models").rglob(f"{model_id}.*") if p.suffix != ".json"]
    (entry,) = [json.loads(line) for line in (store.root / "erasure_log.jsonl").read_text().splitlines()]
    assert sorted(entry["models_removed"]) == sorted(before)

    # What the store keeps holds nothing of the patient; the retrained k-NN holds the other patient.
    after = _models_holding(store, rows_of[gone])
    assert after and set(after).isdisjoint(before) and not any(after.values()), after
    retrained_knn = next(m for m in after if m.startswith("knn_"))
    others = pd.concat([rows for pid, rows in rows_of.items() if pid != gone])
    assert _models_holding(store, others)[retrained_knn] > 0

    registry = _sql(store, "select model_id, removed, needs_retraining, promoted from models")
    old = registry[registry["model_id"].isin(before)]
    assert len(old) == len(before) and old["removed"].str.contains("its file was deleted").all()
    assert old["needs_retraining"].all() and registry.loc[~registry["model_id"].isin(before), "removed"].isna().all()
    # The promoted models were deleted too: no arm scores until new ones are promoted, and the old ones cannot be.
    models, promotions = registry_models(store), read_promotions(store)
    assert promoted_models(models, promotions) == {} and len(deleted_promoted(models, promotions)) == 3
    with pytest.raises(PromotionError, match="a deleted model scores no one"):
        append_promotions(store, store.read_lake("models"), [knn], "a test", "tester", "no-run")
    # The retrained study's report (forget deleted the earlier ones); UTF-8 whatever the locale says.
    pages = [p.read_text(encoding="utf-8") for p in (store.artifacts / "report").rglob("report.html")]
    assert pages and all(f"{len(before)} model(s) of an earlier training were deleted" in page for page in pages)
