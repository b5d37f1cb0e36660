"""The pure parts of the run machinery (metorigin/runtime/), without a run: which partitions are
fresh, how waiting scans become batch runs, and which code version each Python asset gets.

Freshness is read from an ephemeral Dagster instance whose events are reported directly (runless
materialisations carrying the provenance tags a run writes), and checked against Dagster's own
resolver: `fresh_partitions` reads the event log in batches and must never call fresh what the
resolver (what the UI shows) calls stale or missing.
"""

from __future__ import annotations

import dataclasses
import uuid

import dagster as dg
import pytest

from metorigin.core.study import get_settings, with_run_choices
from metorigin.defs.common.names import (
    BATCH_OP,
    PER_SCAN_GROUP,
    PROCESS_SCAN_JOB,
    PROCESS_SCANS_JOB,
    SCAN_INPUTS,
    SCAN_INTEGRITY,
)
from metorigin.runtime import batches, staleness
from metorigin.runtime.batches import (
    AwaitingScan,
    batch_requests,
    per_scan_code_version,
    scans_in_flight,
    scans_with_events_after,
)
from metorigin.runtime.dagster_internals import (
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    NULL_DATA_VERSION,
    NULL_EVENT_POINTER,
    StaleStatus,
    get_input_data_version_tag,
    get_input_event_pointer_tag,
)
from metorigin.runtime.staleness import (
    feature_store_is_stale,
    fresh_partitions,
    latest_storage_id,
    settled_partitions,
    stale_closure,
    status_resolver,
)
from metorigin.runtime.versions import code_version, with_code_versions

SCANS = ("s1", "s2", "s3")
PARTITIONS = dg.DynamicPartitionsDefinition(name="scans")  # as the per-scan assets' (defs/common/partitions.py)
RAW, MADE, TABLE, EXTRA = (dg.AssetKey(name) for name in ("raw", "made", "table", "extra"))
KEYS = {RAW, MADE}


# ---------------------------------------------------------------------------------------------
# A small graph shaped like the per-scan assets: `raw` per scan, `made` per scan from `raw` and the
# unpartitioned `table` (as the per-scan assets read the study settings).


def graph_of(raw: str = "1", made: str = "1", made_also_reads_extra: bool = False):
    """The asset graph with these code versions (a bumped revision is another graph, as after a
    code change); `made_also_reads_extra`: an input added to `made` since it was materialised."""

    @dg.asset(code_version="1")
    def table(): ...

    @dg.asset(code_version="1")
    def extra(): ...

    @dg.asset(name="raw", partitions_def=PARTITIONS, code_version=raw)
    def raw_asset(): ...

    deps = [RAW, TABLE, *([EXTRA] if made_also_reads_extra else [])]

    @dg.asset(name="made", partitions_def=PARTITIONS, code_version=made, deps=deps)
    def made_asset(): ...

    return dg.Definitions(assets=[table, extra, raw_asset, made_asset]).resolve_asset_graph()


def latest_record(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None):
    """The asset's (partition's) latest materialisation record, or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    return records[0] if records else None


def materialise(instance, graph, key: dg.AssetKey, version: str, partition: str | None = None) -> int:
    """Record a materialisation as a run writes it: the asset's code version, its data version, and
    for each input the data version and event id it reads now (the same partition of a partitioned
    input). Returns its event-log id."""
    node = graph.get(key)
    tags = {DATA_VERSION_TAG: version, CODE_VERSION_TAG: node.code_version}
    for parent in node.parent_keys:
        record = latest_record(instance, parent, partition if graph.get(parent).is_partitioned else None)
        read = record.event_log_entry.tags[DATA_VERSION_TAG] if record else NULL_DATA_VERSION.value
        tags[get_input_data_version_tag(parent)] = read
        tags[get_input_event_pointer_tag(parent)] = str(record.storage_id) if record else NULL_EVENT_POINTER
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition, tags=tags))
    return latest_record(instance, key, partition).storage_id


@pytest.fixture
def instance():
    """An in-memory instance with the scans registered and each scan's `raw` and `made` made once."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(PARTITIONS.name, list(SCANS))
    graph = graph_of()
    materialise(instance, graph, TABLE, "table-1")
    for scan in SCANS:
        materialise(instance, graph, RAW, f"raw-{scan}", scan)
        materialise(instance, graph, MADE, f"made-{scan}", scan)
    return instance


def resolver_fresh(instance, graph, keys=KEYS, scans=SCANS) -> set[str]:
    """The scans whose `keys` Dagster's own resolver calls FRESH (what the UI shows)."""
    resolver = status_resolver(instance, graph)
    return {s for s in scans if all(resolver.get_status(k, s) == StaleStatus.FRESH for k in keys)}


def settled(instance, graph, keys=KEYS, scans=SCANS) -> tuple[set[str], set[str]]:
    """`settled_partitions`' (fresh, stale), each checked against the resolver: what the batched
    reading settles, the resolver says too (it may leave a scan to the resolver, never contradict it)."""
    fresh, stale = settled_partitions(instance, graph, keys, scans)
    expected = resolver_fresh(instance, graph, keys, scans)
    assert fresh <= expected and stale <= set(scans) - expected and not fresh & stale
    return fresh, stale


def test_unchanged_partitions_are_fresh_as_the_resolver_says(instance):
    """Nothing changed since each scan was made: every scan is fresh, so `metorigin run` and the
    sensor skip all of them without asking the resolver partition by partition."""
    graph = graph_of()
    assert settled(instance, graph) == (set(SCANS), set())
    assert all(not stale_closure(instance, graph, KEYS, scan) for scan in SCANS)


def test_a_scan_never_materialised_is_not_fresh(instance):
    """A scan registered since (or made only in part) has a missing asset: never fresh."""
    graph = graph_of()
    instance.add_dynamic_partitions(PARTITIONS.name, ["s4", "s5"])
    materialise(instance, graph, RAW, "raw-s5", "s5")  # `made` never materialised for s5
    scans = [*SCANS, "s4", "s5"]
    assert settled(instance, graph, scans=scans) == (set(SCANS), {"s4", "s5"})
    resolver = status_resolver(instance, graph)
    assert resolver.get_status(MADE, "s4") == resolver.get_status(MADE, "s5") == StaleStatus.MISSING
    assert stale_closure(instance, graph, KEYS, "s5") == {MADE}  # `raw` is fresh there: only `made` runs


def test_a_new_code_version_makes_every_partition_of_that_asset_stale(instance):
    """A bumped revision (another code version in the graph): every made scan of that asset is
    stale, and its input, whose code did not change, stays fresh."""
    bumped = graph_of(made="2")
    assert settled(instance, bumped) == (set(), set(SCANS))
    assert settled(instance, bumped, {RAW}) == (set(SCANS), set())
    assert {stale_closure(instance, bumped, KEYS, scan) == {MADE} for scan in SCANS} == {True}


def test_an_input_with_a_new_data_version_makes_its_scan_stale_alone(instance):
    """One scan's input re-made with other content: that scan is stale, the others are not."""
    graph = graph_of()
    materialise(instance, graph, RAW, "raw-s2-changed", "s2")
    assert settled(instance, graph) == ({"s1", "s3"}, {"s2"})
    assert stale_closure(instance, graph, KEYS, "s2") == {MADE}


def test_an_input_re_made_with_the_same_data_version_leaves_its_scan_fresh(instance):
    """Data versions come from content: an input re-materialised with identical bytes (e.g. its
    file's time changed) has a newer event but the same version, so nothing after it re-runs. This
    is the case where `fresh_partitions` compares the event read with the latest one."""
    graph = graph_of()
    before = latest_record(instance, RAW, "s2").storage_id
    assert materialise(instance, graph, RAW, "raw-s2", "s2") > before
    assert settled(instance, graph) == (set(SCANS), set())


def test_a_changed_unpartitioned_input_makes_every_scan_stale_until_its_version_returns(instance):
    """Every scan read the unpartitioned `table` (as they read the study settings): another version
    of it makes all of them stale; its earlier version back (the same content) makes them fresh again."""
    graph = graph_of()
    materialise(instance, graph, TABLE, "table-2")
    assert settled(instance, graph) == (set(), set(SCANS))
    materialise(instance, graph, TABLE, "table-1")
    assert settled(instance, graph) == (set(SCANS), set())


def test_an_input_added_since_makes_every_made_scan_stale(instance):
    """`made` now reads `extra` as well, which its events never read: what they recorded no longer
    describes how it is computed."""
    graph = graph_of(made_also_reads_extra=True)
    materialise(instance, graph, EXTRA, "extra-1")
    assert settled(instance, graph) == (set(), set(SCANS))


def test_what_the_batched_reading_cannot_settle_is_left_to_the_resolver(instance):
    """`fresh_partitions` only returns what it can prove fresh; the callers ask `stale_closure` about
    the rest. A materialisation without provenance tags (no code version: an event of an older
    Dagster, or reported by hand) is fresh to the resolver, which falls back to timestamps, but not
    provable here; keys of mixed partitioning, or no scans, prove nothing."""
    graph = graph_of()
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=MADE, partition="s3"))
    assert resolver_fresh(instance, graph) == set(SCANS)
    assert settled(instance, graph) == ({"s1", "s2"}, set())  # s3: neither, the resolver's to say
    assert not stale_closure(instance, graph, KEYS, "s3")  # the callers' second question: fresh, skipped
    assert fresh_partitions(instance, graph, KEYS | {TABLE}, SCANS) == set()
    assert fresh_partitions(instance, graph, KEYS, []) == set()


def test_events_are_read_in_batches_across_queries(instance, monkeypatch):
    """The event log is read `RECORDS_PER_QUERY` events to a query (1,000; 2 here, so that 3 scans
    of two assets take several queries): a scan's answer must not depend on which query read it."""
    monkeypatch.setattr(staleness, "RECORDS_PER_QUERY", 2)
    graph = graph_of()
    materialise(instance, graph, RAW, "raw-s3-changed", "s3")
    assert settled(instance, graph) == ({"s1", "s2"}, {"s3"})


def test_the_stale_closure_takes_what_is_downstream_among_the_keys(instance):
    """Dagster calls `made` fresh when only its input's code changed (it does not follow staleness
    downstream), but `raw` will be re-made, so `made` must run after it; keys not asked about are
    never returned."""
    bumped = graph_of(raw="2")
    resolver = status_resolver(instance, bumped)
    assert resolver.get_status(RAW, "s1") == StaleStatus.STALE
    assert resolver.get_status(MADE, "s1") == StaleStatus.FRESH
    assert stale_closure(instance, bumped, KEYS, "s1") == KEYS
    assert stale_closure(instance, bumped, {RAW}, "s1") == {RAW}
    assert stale_closure(instance, bumped, {MADE}, "s1") == set()


def test_the_feature_store_is_stale_after_a_scan_result_newer_than_its_build():
    """Past 100 scans Dagster stops following each partition into the feature store, so a per-scan
    result made after its last build makes it stale; a re-run integrity check (which re-checks a
    file whose time alone changed) does not."""

    @dg.asset(name=SCAN_INTEGRITY.path[0], partitions_def=PARTITIONS, code_version="1")
    def integrity(): ...

    @dg.asset(name="lesions", partitions_def=PARTITIONS, code_version="1")
    def lesions(): ...

    @dg.asset(name="features", code_version="1")
    def features(): ...

    graph = dg.Definitions(assets=[integrity, lesions, features]).resolve_asset_graph()
    models, per_scan = {dg.AssetKey("features")}, {SCAN_INTEGRITY, dg.AssetKey("lesions")}
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(PARTITIONS.name, list(SCANS))
    assert latest_storage_id(instance, per_scan | models) == 0  # nothing yet
    assert feature_store_is_stale(instance, graph, models, per_scan)  # never built: missing
    lesions_s1 = materialise(instance, graph, dg.AssetKey("lesions"), "l1", "s1")
    built = materialise(instance, graph, dg.AssetKey("features"), "f1")
    assert latest_storage_id(instance, per_scan | models) == built > lesions_s1
    assert not feature_store_is_stale(instance, graph, models, per_scan)
    materialise(instance, graph, SCAN_INTEGRITY, "i1", "s1")
    assert not feature_store_is_stale(instance, graph, models, per_scan)
    newer = materialise(instance, graph, dg.AssetKey("lesions"), "l2", "s2")
    assert latest_storage_id(instance, per_scan - {SCAN_INTEGRITY}) == newer
    assert feature_store_is_stale(instance, graph, models, per_scan)


# ---------------------------------------------------------------------------------------------
# Batches: the sensor's and the nightly schedule's `process_scans` runs.


def awaiting(count: int, version: str = "v1") -> list[AwaitingScan]:
    return [AwaitingScan(f"S{i:03d}", f"scan-S{i:03d}-{version}") for i in range(count)]


def scans_of(request: dg.RunRequest) -> list[str]:
    return request.run_config["ops"][BATCH_OP]["config"]["scans"]


def test_no_scans_awaiting_make_no_run():
    """An empty batch would be a `process_scans` run without a list: every stale scan."""
    assert batch_requests([]) == []
    assert batch_requests([], run_key="nightly-2024-01-02") == []


def test_one_more_scan_than_a_batch_makes_a_second_run_in_order():
    """`SCANS_PER_RUN` scans to a `process_scans` run, in the order given, each scan in one run."""
    size = batches.SCANS_PER_RUN
    scans = awaiting(size + 1)
    assert [scans_of(r) for r in batch_requests(scans[:size])] == [[s.scan_id for s in scans[:size]]]
    requests = batch_requests(scans)
    assert [scans_of(r) for r in requests] == [[s.scan_id for s in scans[:size]], [scans[-1].scan_id]]
    assert {r.job_name for r in requests} == {PROCESS_SCANS_JOB}


def test_a_batch_run_key_follows_what_its_scans_need():
    """Dagster launches a run key once: the same scans with the same inputs are not launched again at
    the next tick, and a scan whose inputs changed since is a new request (its batch alone)."""
    size = batches.SCANS_PER_RUN
    first = batch_requests(awaiting(size + 1))
    assert [r.run_key for r in batch_requests(awaiting(size + 1))] == [r.run_key for r in first]
    assert len({r.run_key for r in first}) == 2 and all(r.run_key.startswith("scans-") for r in first)
    changed = awaiting(size + 1)
    changed[-1] = AwaitingScan(changed[-1].scan_id, changed[-1].key + "-new-inputs")
    again = batch_requests(changed)
    assert again[0].run_key == first[0].run_key and again[1].run_key != first[1].run_key


def test_a_named_run_key_numbers_its_batches():
    """The nightly schedule names its runs by the night: one run per batch, numbered from 1."""
    requests = batch_requests(awaiting(2 * batches.SCANS_PER_RUN + 1), run_key="nightly-2024-01-02")
    assert [r.run_key for r in requests] == ["nightly-2024-01-02-1", "nightly-2024-01-02-2", "nightly-2024-01-02-3"]


def per_scan_graph(lesions: str = "1", study: str = "1"):
    """A per-scan asset (group imaging), the observed `scan_inputs`, and a study asset."""

    @dg.asset(name="lesions", group_name=PER_SCAN_GROUP, partitions_def=PARTITIONS, code_version=lesions)
    def per_scan(): ...

    @dg.asset(name="split", group_name="study", code_version=study)
    def split(): ...

    inputs = dg.AssetSpec(SCAN_INPUTS, group_name=PER_SCAN_GROUP, partitions_def=PARTITIONS)
    return dg.Definitions(assets=[per_scan, split, inputs]).resolve_asset_graph()


def test_the_per_scan_code_version_changes_with_per_scan_code_alone():
    """The sensor looks at every scan again when the per-scan code changed, and not for a change
    elsewhere (a study step's revision)."""
    base = per_scan_code_version(per_scan_graph())
    assert per_scan_code_version(per_scan_graph()) == base
    assert per_scan_code_version(per_scan_graph(lesions="2")) != base
    assert per_scan_code_version(per_scan_graph(study="2")) == base


def test_the_scans_with_events_after_a_look_are_those_with_new_results_or_inputs():
    """Between two looks the sensor asks only about scans with a per-scan materialisation or a
    `scan_inputs` observation since the last one, and remembers the newest event id."""
    graph = per_scan_graph()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(PARTITIONS.name, list(SCANS))
    assert scans_with_events_after(instance, graph, 0) == (set(), 0)
    first = materialise(instance, graph, dg.AssetKey("lesions"), "l1", "s1")
    assert scans_with_events_after(instance, graph, 0) == ({"s1"}, first)
    instance.report_runless_asset_event(
        dg.AssetObservation(asset_key=SCAN_INPUTS, partition="s2", tags={DATA_VERSION_TAG: "in-2"})
    )
    changed, newest = scans_with_events_after(instance, graph, first)
    assert changed == {"s2"} and newest > first
    assert scans_with_events_after(instance, graph, newest) == (set(), newest)
    assert scans_with_events_after(instance, graph, 0)[0] == {"s1", "s2"}


def add_run(instance, job_name: str, status: dg.DagsterRunStatus, scans=None, partition=None) -> None:
    """A run as the run queue holds it (no execution): its job, status, batch list or partition."""
    config = {"ops": {BATCH_OP: {"config": {"scans": scans}}}} if scans is not None else {}
    tags = {"dagster/partition": partition} if partition else {}
    run = dg.DagsterRun(job_name=job_name, run_id=str(uuid.uuid4()), run_config=config, status=status, tags=tags)
    instance.add_run(run)


def test_scans_in_flight_are_those_of_unfinished_runs():
    """The sensor and the schedule skip scans a run not finished yet will process (a queued run
    needs a code location's origin to be stored; one not started reads the same); a finished run
    holds none; a `process_scans` run without a list (launched from the UI) will process every stale
    scan, so nothing more is requested."""
    instance = dg.DagsterInstance.ephemeral()
    assert scans_in_flight(instance) == set()
    add_run(instance, PROCESS_SCANS_JOB, dg.DagsterRunStatus.NOT_STARTED, scans=["s1", "s2"])
    add_run(instance, PROCESS_SCANS_JOB, dg.DagsterRunStatus.SUCCESS, scans=["s5"])
    add_run(instance, PROCESS_SCAN_JOB, dg.DagsterRunStatus.STARTED, partition="s3")
    add_run(instance, PROCESS_SCAN_JOB, dg.DagsterRunStatus.FAILURE, partition="s4")
    assert scans_in_flight(instance) == {"s1", "s2", "s3"}
    add_run(instance, PROCESS_SCANS_JOB, dg.DagsterRunStatus.STARTED, scans=[])
    assert scans_in_flight(instance) is None


# ---------------------------------------------------------------------------------------------
# Code versions: a changed setting re-runs only the assets whose step reads it.

QUICK = get_settings("quick")


def replaced(study, section: str, **changes):
    """The study with some settings of one section changed (validated again, as a study file is)."""
    return dataclasses.replace(study, **{section: dataclasses.replace(getattr(study, section), **changes)})


def test_a_code_version_moves_with_the_settings_its_step_reads_only():
    """Another minimum lesion size re-makes the lesions (and what reads them by data version), not
    the radiomics extraction's own code version; another crop margin the reverse; another seed
    neither, but the patient split. The same study, built again, gives the same versions: fresh stays fresh."""
    versions = {name: code_version(name, QUICK) for name in ("lesions", "radiomics_features", "patient_split")}
    assert {name: code_version(name, get_settings("quick")) for name in versions} == versions
    bigger = replaced(QUICK, "lesions", min_diameter_mm=QUICK.lesions.min_diameter_mm + 2)
    wider = replaced(QUICK, "radiomics", crop_margin_voxels=QUICK.radiomics.crop_margin_voxels + 1)
    reseeded = get_settings("quick", seed=QUICK.seed + 1)
    changed = {
        label: {name for name, version in versions.items() if code_version(name, study) != version}
        for label, study in (("lesions", bigger), ("radiomics", wider), ("seed", reseeded))
    }
    assert changed == {"lesions": {"lesions"}, "radiomics": {"radiomics_features"}, "seed": {"patient_split"}}


def test_machine_settings_change_no_code_version():
    """Workers and where the scans run change how fast, never what is computed: nothing re-runs."""
    faster = with_run_choices(QUICK, workers=64, executor="multiprocess", scans_at_once=8)
    assert faster != QUICK
    for name in ("segmentations", "lesions", "radiomics_features", "patient_split", "metric_intervals"):
        assert code_version(name, faster) == code_version(name, QUICK), name


def test_with_code_versions_versions_the_assets_of_the_table_and_leaves_the_rest():
    """Assets of the revisions table get this study's code version, one per output of a
    multi-asset; an asset outside it (`patients`, ingest's) keeps its own; what is not an assets
    definition passes through untouched."""

    @dg.asset(name="lesions")
    def lesions(): ...

    @dg.asset(name="patients", code_version="own")
    def patients(): ...

    @dg.multi_asset(specs=[dg.AssetSpec("metric_intervals"), dg.AssetSpec("model_comparisons")])
    def evaluation(): ...

    spec = dg.AssetSpec("radiomics_features")
    bigger = replaced(QUICK, "lesions", min_diameter_mm=QUICK.lesions.min_diameter_mm + 2)
    versioned = with_code_versions([lesions, patients, evaluation, spec], QUICK)
    assert versioned[3] is spec
    found = {key.to_user_string(): v for a in versioned[:3] for key, v in a.code_versions_by_key.items()}
    expected = {n: code_version(n, QUICK) for n in ("lesions", "metric_intervals", "model_comparisons")}
    assert found == {**expected, "patients": "own"}
    again = with_code_versions([lesions, patients], bigger)
    assert again[0].code_versions_by_key[dg.AssetKey("lesions")] != found["lesions"]
    assert again[1].code_versions_by_key[dg.AssetKey("patients")] == "own"
