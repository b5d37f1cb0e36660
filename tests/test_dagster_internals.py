"""Dagster's private API, as metorigin uses it (metorigin/runtime/dagster_internals.py): each name
still exists and still does what our code relies on. An upgrade that moves or changes one fails
here, naming it."""

from __future__ import annotations

import inspect

import dagster as dg
import pytest

from metorigin.runtime import dagster_internals as di


@pytest.mark.parametrize("name", di.__all__)
def test_every_private_name_we_use_still_exists(name):
    assert getattr(di, name) is not None


def test_the_run_statuses_split_into_finished_and_not():
    assert dg.DagsterRunStatus.STARTED in di.NOT_FINISHED_STATUSES
    assert dg.DagsterRunStatus.QUEUED in di.NOT_FINISHED_STATUSES
    assert {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE} <= set(di.FINISHED_STATUSES)
    assert not set(di.FINISHED_STATUSES) & set(di.NOT_FINISHED_STATUSES)


def test_cron_strings_and_selections_are_judged_as_we_expect():
    assert di.is_valid_cron_string("0 3 * * 1") and not di.is_valid_cron_string("99 99 * * *")
    with pytest.raises(di.DagsterInvalidAssetSelectionError):
        dg.AssetSelection.from_string("key:(scans")


def test_data_version_tags_and_serialisation_keep_their_shape():
    assert di.DATA_VERSION_TAG == "dagster/data_version" and di.CODE_VERSION_TAG == "dagster/code_version"
    key = dg.AssetKey("lesions")
    assert di.get_input_data_version_tag(key).startswith(di.INPUT_DATA_VERSION_TAG_PREFIX)
    assert di.get_input_event_pointer_tag(key).startswith(di.INPUT_EVENT_POINTER_TAG_PREFIX)
    assert di.StaleStatus.MISSING and di.StaleStatus.STALE and di.StaleStatus.FRESH
    assert '"lesions"' in di.serialize_value(key)
    columns = {c.name for c in di.SqlEventLogStorageTable.columns}
    assert {"id", "event", "asset_key", "partition"} <= columns  # what staleness.py reads in batches


def test_the_signatures_our_code_calls_are_unchanged():
    assert "instance" in inspect.signature(di.CachingStaleStatusResolver).parameters
    assert list(inspect.signature(di.ReconstructableRepository.for_module).parameters)[:2] == ["module", "fn_name"]
    assert hasattr(di.ReconstructableJob.get_definition, "cache_clear")  # execution.forget_loaded_definitions
    assert di.RetryMode.DISABLED
