"""Shared fixtures: a tiny synthetic cohort (generated once per session) and helpers to spoil it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from metorigin.core.config import quiet_libraries
from metorigin.imaging.synth import SynthConfig, generate_cohort

quiet_libraries()

TINY = SynthConfig(seed=3, scale=0.05, matrix=80, workers=2)

# The longest modules first: `make test` runs two processes that each take whole modules in
# collection order, so a long module started last would leave one process waiting on the other.
# (test_wheel.py's tests also rely on running in file order: one study run serves them all.)
LONGEST_FIRST = (
    "test_study.py",
    "test_models_in_use.py",
    "test_wheel.py",
    "test_daemon.py",
    "test_dagster_imaging.py",
    "test_bad_inputs.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))  # stable: the rest keep their order


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """8 patients (4 per class), 10 scans: one DICOM series, one reoriented mask, two excluded scans."""
    return generate_cohort(tmp_path_factory.mktemp("tiny") / "cohort", TINY)


@pytest.fixture
def cohort(tiny_cohort, tmp_path) -> Path:
    """A private copy of the tiny cohort that a test may edit: CSVs copied, image folders linked."""
    copy = tmp_path / "cohort"
    copy.mkdir()
    for entry in tiny_cohort.iterdir():
        if entry.is_file():
            shutil.copy(entry, copy / entry.name)
        else:
            (copy / entry.name).symlink_to(entry, target_is_directory=True)
    return copy


@pytest.fixture(scope="module", autouse=True)
def _fresh_dagster_context():
    """Start each test module without the definitions-state storage of an earlier module's Dagster
    instance: it lives in a context variable that outlives the instance when pytest tears fixtures
    down in another context, and a later in-process run would try to open the deleted instance.
    (A `metorigin` process has one instance, so only the test process needs this; private API.)"""
    from metorigin.runtime.dagster_internals import set_defs_state_storage

    with set_defs_state_storage(None):
        yield


@pytest.fixture(autouse=True)
def _definitions_of_this_test():
    """Each test builds the definitions of its own store (from the configuration it gives): Dagster's
    process-wide memo of the last loaded job must not hand it an earlier test's (execution.py)."""
    from metorigin.runtime.execution import forget_loaded_definitions

    forget_loaded_definitions()
