"""Dagster's private API, as metorigin uses it (metorigin/runtime/dagster_internals.py): each name
still exists and still does what our code relies on. An upgrade that moves or changes one fails
here, naming it."""

from __future__ import annotations

import dataclasses
import inspect

import dagster as dg
import pytest

from metorigin.runtime import dagster_internals as di


@pytest.mark.parametrize("name", di.__all__)
def test_every_private_name_we_use_still_exists(name):
    assert getattr(di, name) is not None


def test_our_run_statuses_split_as_dagsters_own_lists_do():
    """names.py splits the public enum itself; Dagster's private lists (imported here on purpose)
    say the same, so a status added by an upgrade fails here rather than hiding a running run."""
    from dagster._core.storage.dagster_run import FINISHED_STATUSES, NOT_FINISHED_STATUSES

    from metorigin.defs.common import names

    assert set(names.FINISHED_STATUSES) == set(FINISHED_STATUSES)
    assert set(names.NOT_FINISHED_STATUSES) == set(NOT_FINISHED_STATUSES)


def test_cron_strings_and_selections_are_judged_as_we_expect():
    from metorigin.cli.session import selection_problem
    from metorigin.core.study import get_settings
    from metorigin.defs.study.schedules import retrain_problems

    quick = get_settings("quick")
    assert retrain_problems(dataclasses.replace(quick, retrain="0 3 * * 1"), "s.yaml") == []
    assert retrain_problems(dataclasses.replace(quick, retrain="99 99 * * *"), "s.yaml")
    assert "is not an asset selection" in selection_problem("key:(scans")


def test_data_version_tags_and_serialisation_keep_their_shape():
    assert di.DATA_VERSION_TAG == "dagster/data_version" and di.CODE_VERSION_TAG == "dagster/code_version"
    key = dg.AssetKey("lesions")
    assert di.get_input_data_version_tag(key).startswith(di.INPUT_DATA_VERSION_TAG_PREFIX)
    assert di.get_input_event_pointer_tag(key).startswith(di.INPUT_EVENT_POINTER_TAG_PREFIX)
    assert di.StaleStatus.MISSING and di.StaleStatus.STALE and di.StaleStatus.FRESH
    assert '"lesions"' in dg.serialize_value(key)
    columns = {c.name for c in di.SqlEventLogStorageTable.columns}
    assert {"id", "event", "asset_key", "partition"} <= columns  # what staleness.py reads in batches


def test_the_signatures_our_code_calls_are_unchanged():
    assert "instance" in inspect.signature(di.CachingStaleStatusResolver).parameters
    assert list(inspect.signature(di.ReconstructableRepository.for_module).parameters)[:2] == ["module", "fn_name"]
    assert hasattr(di.ReconstructableJob.get_definition, "cache_clear")  # execution.forget_loaded_definitions
    assert di.RetryMode.DISABLED
