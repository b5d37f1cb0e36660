"""The Dagster asset graph as a committed snapshot, plus the structural rules it must always follow.

Any change to the graph (an asset, a dependency, a group, a partitioning, a kind, an asset check or
whether it blocks, a job, a sensor, a schedule) changes `tests/data/asset_graph.json`, so it shows up
in review as a diff of that file. After an intended change, regenerate the file with

    METORIGIN_UPDATE_SNAPSHOT=1 .venv/bin/pytest tests/test_asset_graph.py

and commit it with the change. Loading the definitions needs no cohort and no store on disk.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import dagster as dg
import pytest

SNAPSHOT = Path(__file__).parent / "data" / "asset_graph.json"
UPDATE_VARIABLE = "METORIGIN_UPDATE_SNAPSHOT"
REGENERATE = f"{UPDATE_VARIABLE}=1 .venv/bin/pytest tests/test_asset_graph.py"

# Data flows one way through the groups: a group may depend on itself and on earlier groups only.
GROUP_ORDER = ("cohort", "imaging", "feature_store", "study", "validation")
PARTITIONED_GROUP = "imaging"


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    from metorigin.definitions import defs

    return defs()


def asset_graph_snapshot(defs: dg.Definitions) -> dict:
    """The graph as plain data: assets by key (user string), each with its group, parents, whether it
    is partitioned, its kinds and its checks; and the names of the jobs, sensors and schedules."""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "partitioned": node.is_partitioned,
            "kinds": sorted(node.kinds),
            "checks": [],
        }
    # Every check of the graph, whether declared on its asset, standalone, or made by dagster-dbt from a dbt test.
    for check_key in graph.asset_check_keys:
        assets[check_key.asset_key.to_user_string()]["checks"].append(
            {"name": check_key.name, "blocking": graph.get_check_spec(check_key).blocking}
        )
    for asset in assets.values():
        asset["checks"].sort(key=lambda check: check["name"])
    repository = defs.get_repository_def()
    return {
        "assets": assets,
        # Dagster's implicit asset jobs (`__ASSET_JOB`, `__ASSET_JOB_<n>`) follow from the assets; not listed.
        "jobs": sorted(job.name for job in defs.resolve_all_job_defs() if not job.name.startswith("__")),
        "sensors": sorted(sensor.name for sensor in repository.sensor_defs),
        "schedules": sorted(schedule.name for schedule in repository.schedule_defs),
    }


def render_asset_graph(defs: dg.Definitions) -> str:
    """The snapshot as stable JSON: keys sorted, lists sorted, one trailing newline."""
    return json.dumps(asset_graph_snapshot(defs), indent=2, sort_keys=True) + "\n"


def test_asset_graph_matches_snapshot(defs):
    rendered = render_asset_graph(defs)
    if os.environ.get(UPDATE_VARIABLE):
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(rendered)
        return
    if not SNAPSHOT.is_file():
        pytest.fail(f"{SNAPSHOT} is missing; create it with: {REGENERATE}", pytrace=False)
    committed = SNAPSHOT.read_text()
    if rendered != committed:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                rendered.splitlines(keepends=True),
                fromfile="tests/data/asset_graph.json (committed)",
                tofile="asset graph (current definitions)",
            )
        )
        pytest.fail(
            f"The Dagster asset graph differs from its committed snapshot:\n\n{diff}\n"
            f"If the change is intended, regenerate the snapshot and commit it with the change:\n"
            f"    {REGENERATE}",
            pytrace=False,
        )


def test_asset_graph_structure(defs):
    assets = asset_graph_snapshot(defs)["assets"]
    graph = defs.resolve_asset_graph()
    rank = {group: i for i, group in enumerate(GROUP_ORDER)}
    # Every key is an asset the platform materialises, except the scans' inputs, which ingest observes:
    # a dbt source that maps onto no Python asset would appear as an external stub (in group
    # "default"), which the DuckDB build could never read.
    problems = [
        f"{key.to_user_string()}: not materialisable here (a dbt source without a Python asset?)"
        for key in sorted(graph.get_all_asset_keys(), key=lambda key: key.to_user_string())
        if not graph.get(key).is_materializable and key != dg.AssetKey("scan_inputs")
    ]
    for name, asset in sorted(assets.items()):
        group = asset["group"]
        if group not in rank:
            problems.append(f"{name}: group {group!r} is none of {list(GROUP_ORDER)}")
        if asset["partitioned"] and group != PARTITIONED_GROUP:
            problems.append(f"{name}: partitioned, but in group {group!r} (only {PARTITIONED_GROUP!r} is per scan)")
        for dep in asset["deps"]:
            dep_group = assets[dep]["group"]
            if group in rank and dep_group in rank and rank[dep_group] > rank[group]:
                problems.append(f"{name} (group {group!r}) depends on {dep} in the later group {dep_group!r}")
    assert not problems, "The asset graph breaks its structural rules:\n" + "\n".join(problems)


def test_a_bumped_output_of_a_multi_asset_reruns_its_siblings_and_what_follows():
    """One output's code version bumped (model_comparisons beside metric_intervals) leaves its
    siblings fresh; Dagster cannot run a multi-asset's output alone, so the stale set takes them."""
    from metorigin.runtime.staleness import stale_closure

    def definitions(version: str) -> dg.Definitions:
        @dg.multi_asset(specs=[dg.AssetSpec("first", code_version="1"), dg.AssetSpec("second", code_version=version)])
        def pair():
            yield dg.MaterializeResult(asset_key="first")
            yield dg.MaterializeResult(asset_key="second")

        @dg.asset(deps=["first"], code_version="1")
        def after() -> dg.MaterializeResult:
            return dg.MaterializeResult()

        return dg.Definitions(assets=[pair, after])

    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize(definitions("1").assets, instance=instance).success
    bumped = definitions("2")
    graph = bumped.get_repository_def().asset_graph
    keys = {dg.AssetKey(name) for name in ("first", "second", "after")}
    assert stale_closure(instance, graph, keys) == keys
    selection = dg.AssetSelection.assets(*stale_closure(instance, graph, keys))
    assert dg.materialize(bumped.assets, instance=instance, selection=selection).success
    assert stale_closure(instance, graph, keys) == set()
