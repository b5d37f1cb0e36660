"""The cohort assets: `study_settings` (the study a store holds), then `patients` and `scans`, thin
shells over the cohort contract (metorigin/imaging/cohort.py), and `scan_inputs`, each scan's own inputs.

Each returns a data version computed from its content, so an ingest that finds the cohort as it
was leaves everything downstream fresh. `scans` is one table for the whole cohort, so the per-scan
assets do not depend on it directly (any edited row would make every scan stale): they depend on
their own partition of `scan_inputs`, whose version is observed at ingest from the scan's row and
the size and modification time of its files. `scan_integrity` then hashes the files' content in
the scan's run and versions its output by that, so a copied cohort (new times, same bytes)
re-checks each scan but recomputes nothing after it.
"""

import hashlib
from datetime import datetime
from pathlib import Path

import dagster as dg
import pandas as pd

from metorigin.core.errors import CohortError, MetoriginError
from metorigin.core.forgetting import forgotten_patients
from metorigin.core.lifecycle import retire_scans, scans_with_results
from metorigin.core.manifest import bind_study, settings_table
from metorigin.core.markdown import markdown_table
from metorigin.core.schemas import PATIENTS, SCANS, STUDY_SETTINGS, conform
from metorigin.core.store import Store
from metorigin.core.study import UNLABELLED
from metorigin.defs.common.checks import (
    PATIENTS_CHECKS,
    SCANS_CHECKS,
    rows_check,
    suite_check,
)
from metorigin.defs.common.metadata import N_RETIRED, NOTICE, table_metadata
from metorigin.defs.common.names import COHORT_FINGERPRINT, COHORT_GROUP, DATA_VERSION_TAG, SCAN_INPUTS
from metorigin.defs.common.partitions import scan_partitions
from metorigin.defs.common.resources import CohortResource, SettingsResource, StoreResource
from metorigin.imaging.cohort import (
    PATIENTS_CSV,
    QC_CSV,
    SCANS_CSV,
    read_patients_csv,
    read_qc_csv,
    read_scans_csv,
    validate_patients,
    validate_scans,
)
from metorigin.imaging.fingerprints import cohort_fingerprint, scan_inputs_version
from metorigin.imaging.forgotten import qc_without_forgotten, without_forgotten
from metorigin.quality.suites import scans_suite

# The tag Dagster reads an observation's data version from (dagster/_core/definitions/data_version.py;
# `AssetObservation` takes no data version argument).


def content_version(frame: pd.DataFrame) -> dg.DataVersion:
    """A table's data version: the hash of its content, so an unchanged table keeps its version."""
    return dg.DataVersion(hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).values).hexdigest()[:24])


def _observe_scan_inputs(context: dg.AssetExecutionContext, table: pd.DataFrame, cohort_dir: Path) -> int:
    """Log a `scan_inputs` observation for each included scan whose inputs changed since the last one."""
    key = SCAN_INPUTS
    changed = 0
    for row in table[table["included"]].to_dict("records"):
        version = scan_inputs_version(row, cohort_dir)
        last = context.instance.get_latest_data_version_record(key, is_source=True, partition_key=row["scan_id"])
        if last is not None and (last.event_log_entry.tags or {}).get(DATA_VERSION_TAG) == version:
            continue
        context.log_event(
            dg.AssetObservation(asset_key=key, partition=row["scan_id"], tags={DATA_VERSION_TAG: version})
        )
        changed += 1
    return changed


def _csv_or_fail(read, *args) -> pd.DataFrame:
    """A whole CSV that cannot be used stops the asset with the contract's message, not a traceback."""
    try:
        return read(*args)
    except CohortError as exc:
        raise dg.Failure(description=exc.message) from exc


@dg.asset(group_name=COHORT_GROUP, kinds={"python", "parquet"}, metadata=table_metadata(STUDY_SETTINGS))
def study_settings(context: dg.AssetExecutionContext, store: StoreResource, settings: SettingsResource):
    """The study this store holds, one row per setting with the steps that read it.

    Runs first: it migrates a store written by older code, and binds the store to this study,
    refusing a store that holds another one (so nothing downstream runs under the wrong protocol)."""
    study = settings.settings()
    try:
        for step in bind_study(store.store(), study):
            context.log.info(f"store migrated: {step}")
    except MetoriginError as exc:
        raise dg.Failure(description=str(exc)) from exc
    table = settings_table(study)
    return dg.Output(
        table,
        data_version=content_version(table),
        metadata={
            "study": study.name,
            "study_hash": study.study_hash(),
            **{f"{k}_settings_hash": v for k, v in study.step_hashes().items()},
        },
    )


@dg.asset(
    group_name=COHORT_GROUP,
    kinds={"python", "parquet"},
    check_specs=PATIENTS_CHECKS,
    metadata=table_metadata(PATIENTS),
    deps=[study_settings],
)
def patients(
    context: dg.AssetExecutionContext, cohort: CohortResource, store: StoreResource, settings: SettingsResource
):
    """Patients of the cohort with their class (the study's label column) and Table 1 characteristics.

    A patient erased from this store (`metorigin forget`: consent withdrawn) is refused, never re-ingested."""
    study = settings.settings()
    frame = _csv_or_fail(read_patients_csv, Path(cohort.path), study.label)
    frame, forgotten = without_forgotten(frame, PATIENTS_CSV, forgotten_patients(store.store()))
    table, errors = validate_patients(frame, study.label)
    errors = forgotten + errors
    counts = table["label"].fillna(UNLABELLED).value_counts().to_dict()
    table = conform(table.assign(settings_hash=study.step_hash("cohort")), PATIENTS)
    yield dg.Output(
        table,
        data_version=content_version(table.drop(columns=["source_line"])),
        metadata={"n_patients": len(table), **{f"n_{k}": int(v) for k, v in counts.items()}},
    )
    yield rows_check(context, "patients", errors, store.store())


@dg.asset(
    group_name=COHORT_GROUP, kinds={"python", "parquet"}, check_specs=SCANS_CHECKS, metadata=table_metadata(SCANS)
)
def scans(
    context: dg.AssetExecutionContext,
    cohort: CohortResource,
    store: StoreResource,
    settings: SettingsResource,
    patients: pd.DataFrame,
):
    """Every scan the cohort lists: geometry, acquisition, and whether it meets the inclusion criteria.

    Materialising it registers each included scan as a partition of the per-scan assets, and
    retires the stored results of every scan that left the cohort (row removed, now excluded or
    invalid): moved to `<store>/retired/<date>/`, never deleted, so the marts stop counting them.
    """
    study = settings.settings()
    cohort_dir = Path(cohort.path)
    fingerprint = cohort_fingerprint(cohort_dir)  # before reading: a change while reading is seen next tick
    gone = forgotten_patients(store.store())
    listed = _csv_or_fail(read_scans_csv, cohort_dir)
    frame, forgotten = without_forgotten(listed, SCANS_CSV, gone)
    patient_frame, _ = without_forgotten(_csv_or_fail(read_patients_csv, cohort_dir, study.label), PATIENTS_CSV, gone)
    qc, verdicts = qc_without_forgotten(_csv_or_fail(read_qc_csv, cohort_dir), QC_CSV, listed, gone)
    table, errors = validate_scans(
        frame, patients, patient_frame, cohort_dir, study.inclusion, qc, study.cluster.read_timeout_s
    )
    errors = forgotten + verdicts + errors
    table = conform(table.assign(settings_hash=study.step_hash("cohort")), SCANS)
    included = sorted(table.loc[table["included"], "scan_id"])
    partitions = set(context.instance.get_dynamic_partitions(scan_partitions.name))
    new = sorted(set(included) - partitions)
    if new:
        context.instance.add_dynamic_partitions(scan_partitions.name, new)
    # A partition no row describes (added by hand in the UI's partition dialog, or its row deleted):
    # removed, so no run, backfill or count takes it for a scan of the cohort.
    undescribed = sorted(partitions - set(table["scan_id"]))
    for scan_id in undescribed:
        context.instance.delete_dynamic_partition(scan_partitions.name, scan_id)
    context.log.info(
        f"{len(included)} of {len(table)} scans included; {len(new)} new scan partition(s)"
        + (f"; {len(undescribed)} partition(s) no row describes removed" if undescribed else "")
    )
    reasons = table.loc[~table["included"], ["scan_id", "exclusion_reason"]]
    with store.session(f"run {context.run_id} (scans)"):
        retired = _retire_departed(context, store.store(), table)
    changed = _observe_scan_inputs(context, table, cohort_dir)
    yield dg.Output(
        table,
        data_version=content_version(table.drop(columns=["source_line"])),
        metadata={
            "scans_with_new_inputs": changed,
            COHORT_FINGERPRINT: fingerprint,
            "n_scans": len(table),
            "n_included": len(included),
            "n_invalid": int((~table["valid"]).sum()),
            "new_partitions": len(new),
            "excluded": dg.MetadataValue.md(markdown_table(reasons.to_dict("records"))),
            N_RETIRED: len(retired),
            **({NOTICE: dg.MetadataValue.text("\n".join(retired))} if retired else {}),
        },
    )
    yield rows_check(context, "scans", errors, store.store())
    yield suite_check(scans_suite(table), asset_key="scans")


def _retire_departed(context: dg.AssetExecutionContext, store: Store, table: pd.DataFrame) -> list[str]:
    """Retire the per-scan results of scans that left the study (row removed, or valid and now
    excluded), one line per scan for the summary. A row that is invalid now (an image missing or
    unreadable at ingest, a duplicated id) keeps its results: the marts do not count it, and they
    are there again when the row is fixed."""
    results = scans_with_results(store)
    excluded = table[table["valid"] & ~table["included"]].set_index("scan_id")["exclusion_reason"]
    reasons = {sid: "its row was removed from scans.csv" for sid in results - set(table["scan_id"])}
    reasons |= {sid: f"now excluded: {why}" for sid, why in excluded.items() if sid in results}
    lines = []
    for retired in retire_scans(store, reasons, datetime.now()):
        lines.append(
            f"scan {retired.scan_id} retired ({retired.reason}): {retired.n_files} file(s) moved to "
            f"{retired.folder}; the marts no longer count it"
        )
        context.log.warning(lines[-1])
    return lines
