"""The dbt project in metorigin/sql/ as Dagster assets, building the DuckDB feature store from the lake.

dbt writes the store's private working copy under the store's build lock and the `duckdb_write`
pool; the copy is published only when the whole build (models and dbt tests) succeeds, so
analysts never see half a build. `training_matrix` is a separate step so that the Great
Expectations checks on `lesion_features` can stop it (and everything downstream) when they fail;
the study's results (`models/results/`) are a third step, built after the models that fill them, and
the permutation test and split repeats (`models/robustness/`) a fourth, so they never hold up Table 3.
The model registry (`models/registry/`) is built with the study's results (and alone after a
promotion), the per-scan predictions (`models/predictions/`) with the rest of the feature store,
and the external validation (`models/external/`) in a step of its own, run by `metorigin validate`.
"""

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from metorigin.arms import ARMS
from metorigin.core.arm_sources import write_arm_files
from metorigin.core.config import scoped_environment
from metorigin.core.errors import MetoriginError
from metorigin.core.files import atomic_path
from metorigin.core.markdown import markdown_table
from metorigin.core.package import DBT_PROJECT_DIR, in_checkout
from metorigin.core.schemas import LAKE_TABLES, dbt_columns
from metorigin.core.study import StudySettings
from metorigin.defs.common.names import DUCKDB_WRITE_POOL, FEATURE_STORE_GROUP, STUDY_GROUP, VALIDATION_GROUP
from metorigin.defs.common.resources import SettingsResource, StoreResource
from metorigin.imaging.radiomics import feature_names
from metorigin.report.store_summary import table1_rows, tumor_burden_rows

DBT_DIR = DBT_PROJECT_DIR
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))  # the venv's, whatever PATH says
dbt_project = DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR)


def _manifest_is_stale() -> bool:
    """The wheel ships its manifest (setup.py parses it); in a checkout an edit to the project since
    the last parse would make dagster-dbt and the dbt build disagree about which models exist."""
    if not dbt_project.manifest_path.exists():
        return True
    built = dbt_project.manifest_path.stat().st_mtime
    return any(
        p.stat().st_mtime > built
        for pattern in ("*.sql", "*.yml")
        for p in DBT_DIR.rglob(pattern)
        if "target" not in p.parts
    )


def prepare_manifest() -> Path:
    """The manifest the dbt assets are built from: re-parsed in a checkout when stale (our
    `DbtProject.prepare_if_dev()`, which dagster-dbt runs only under `dagster dev`), never in an
    installed package, which must not write inside itself. Called when the definitions are built,
    not at import. A checkout first writes the arms' generated dbt files (core/arm_sources.py)."""
    if in_checkout():
        write_arm_files(DBT_DIR, [arm.name for arm in ARMS])
    if in_checkout() and _manifest_is_stale():
        subprocess.run(
            [DBT_EXECUTABLE, "parse", "--quiet", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR)],
            check=True,
            cwd=DBT_DIR,
        )
    if not dbt_project.manifest_path.exists():
        raise MetoriginError(
            f"the dbt manifest {dbt_project.manifest_path} is missing: this installation of metorigin is "
            "incomplete. Fix: reinstall the wheel (`pip wheel .` parses the dbt project into it)"
        )
    return dbt_project.manifest_path


GATED_MODELS = "training_matrix"
# Folders by their dbt fully qualified names (`path:` would be resolved against the working folder).
RESULT_MODELS = "fqn:metorigin.results"
ROBUSTNESS_MODELS = "fqn:metorigin.robustness"  # its own step: the slow permutation test never holds up Table 3
REGISTRY_MODELS = "fqn:metorigin.registry"  # the model registry and promotions (group study)
EXTERNAL_MODELS = "fqn:metorigin.external"  # external validation (group validation, `metorigin validate`)
STUDY_FOLDERS = ("models/results/", "models/robustness/", "models/registry/")


class FeatureStoreTranslator(DagsterDbtTranslator):
    """dbt models become `feature_store/<model>`: the table `lesions` is not the Python asset `lesions`."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        return dg.AssetKey([FEATURE_STORE_GROUP, dbt_resource_props["name"]])

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        """What SQL users read in the yml (dagster-dbt's default appends the model's raw SQL)."""
        where = dbt_resource_props.get("original_file_path", "")
        return dbt_resource_props.get("description") or f"dbt {dbt_resource_props['resource_type']} ({where})"

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        path = dbt_resource_props.get("original_file_path", "")
        if path.startswith(STUDY_FOLDERS):
            return STUDY_GROUP  # the study's results sit with the models that produce them
        if path.startswith("models/external/"):
            return VALIDATION_GROUP
        return FEATURE_STORE_GROUP


@contextmanager
def _restored_cwd(cwd: str):
    try:
        yield
    finally:
        os.chdir(cwd)


def dbt_vars(study: StudySettings) -> dict:
    """What the SQL takes from Python: each lake table's declared columns and types, the feature
    columns of the study's radiomics parameter file, and the study's two classes."""
    return {
        "lake_schemas": {name: dbt_columns(schema) for name, schema in LAKE_TABLES.items()},
        "feature_names": sorted(feature_names(Path(study.radiomics.params_file))),
        "label_classes": list(study.label.classes),
        "label_positive": study.label.positive,
        "label_negative": study.label.negative,
    }


def _build(context: dg.AssetExecutionContext, dbt: DbtCliResource, store: StoreResource, settings: SettingsResource):
    target = store.store()
    variables = json.dumps(dbt_vars(settings.settings()))
    cwd = os.getcwd()  # dbt's in-process adapter (the column metadata fetch) leaves the process in sql/
    holder = f"run {context.run_id} (dbt)"
    with store.session(holder), target.build_lock(holder) as build_path, _restored_cwd(cwd):
        # dbt's target and logs (~3 MB a step) in the store's private build folder, gone after the
        # step: the project folder stays clean, and every event is in the Dagster run's log.
        work = build_path.parent / f"dbt-{context.run_id}-{context.op_def.name}"
        for left in build_path.parent.glob("dbt-*"):  # a killed step's (this lock admits one build at a time)
            shutil.rmtree(left, ignore_errors=True)
        parsed = build_path.parent / PARSE_CACHE
        if parsed.exists():
            work.mkdir(parents=True, exist_ok=True)
            shutil.copy(parsed, work / PARSE_CACHE)  # dagster-dbt copies the project's only when none is there
        try:
            with scoped_environment(METORIGIN_STORE=str(target.root), METORIGIN_DUCKDB=str(build_path)):
                events = (
                    dbt.cli(["build", "--vars", variables], context=context, target_path=work)
                    .stream()
                    .fetch_column_metadata(with_column_lineage=False)
                )
                held = []  # the summarised tables' outputs, completed from the published file
                for event in events:
                    if isinstance(event, dg.Output) and _model(event) in SUMMARIES:
                        held.append(event)
                    else:
                        yield event
        finally:
            if (work / PARSE_CACHE).exists():
                with atomic_path(parsed) as tmp:
                    shutil.copy(work / PARSE_CACHE, tmp)
            shutil.rmtree(work, ignore_errors=True)
    yield from (_with_summary(event, target) for event in held)


# dbt's parsed project, kept in the store's build folder from one step to the next. dbt re-parses
# the whole project (3 of a small step's 7 seconds) whenever `--vars` differ from those its saved
# parse was made with, and the project's own saved parse has none; the store's copy was made with
# this study's, so every later step parses only what changed. dbt checks the copy itself (vars,
# profile, project files, its version) and parses afresh when it does not match.
PARSE_CACHE = "partial_parse.msgpack"


# What the UI shows of a table on its asset page, besides dbt's metadata: what SQL users query it for.
SUMMARIES = {
    "cohort_characteristics": ("table_1", table1_rows),
    "tumor_burden": ("by_class", tumor_burden_rows),
}


def _model(event: dg.Output) -> str:
    """The dbt model of a step's output (its output name is the asset key joined by `__`)."""
    return event.output_name.split("__")[-1]


def _with_summary(event: dg.Output, store) -> dg.Output:
    """The output with its table's summary, read from the published feature store (dbt's own
    connection to the build copy is still open in this process)."""
    label, rows = SUMMARIES[_model(event)]
    with store.connect_read_only() as con:
        frame = con.execute(f"select * from {_model(event)}").df()
    return event.with_metadata({**event.metadata, label: dg.MetadataValue.md(markdown_table(rows(frame)))})


def _dbt_step(name: str, **selection: str) -> dg.AssetsDefinition:
    """One `dbt build` step over the models `selection` picks (select= or exclude=)."""

    @dbt_assets(
        manifest=dbt_project.manifest_path,  # not `project=`: the UI would show it as unserializable metadata
        dagster_dbt_translator=FeatureStoreTranslator(),
        pool=DUCKDB_WRITE_POOL,
        name=name,
        **selection,
    )
    def step(context: dg.AssetExecutionContext, dbt: DbtCliResource, store: StoreResource, settings: SettingsResource):
        yield from _build(context, dbt, store, settings)

    return step


# Each step is a dbt process (seconds to start): the registry is published with the study's results,
# and the predictions with the rest of the feature store after the per-scan runs.
OWN_STEPS = {
    "gated_feature_store": GATED_MODELS,
    "study_results": f"{RESULT_MODELS} {REGISTRY_MODELS}",
    "robustness_results": ROBUSTNESS_MODELS,
    "external_validation_tables": EXTERNAL_MODELS,
}


@lru_cache(maxsize=1)
def dbt_steps() -> tuple[dg.AssetsDefinition, ...]:
    """The feature store's dbt steps, read from the manifest once per process."""
    prepare_manifest()
    return (
        _dbt_step("feature_store", exclude=" ".join(OWN_STEPS.values())),
        *(_dbt_step(name, select=selection) for name, selection in OWN_STEPS.items()),
    )


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE)
