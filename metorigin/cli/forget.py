"""`metorigin forget`: erase a patient whose consent is withdrawn, from the store and its instance."""

from __future__ import annotations

import getpass
import sys
from datetime import datetime

from metorigin.cli.session import new_log_path, run_log, store_config, store_definitions, summary, tell
from metorigin.core.errors import MetoriginError
from metorigin.core.forgetting import forget_patient
from metorigin.core.lease import store_session
from metorigin.core.store import Store
from metorigin.runtime.erasure import forget_in_instance, require_instance_free
from metorigin.runtime.home import get_instance, use_store_instance
from metorigin.runtime.runner import run_selection

STUDY_SELECTION = "group:study"  # what `metorigin run --select 'group:study' --force` retrains


def cmd_forget(args) -> int:
    """Erase a patient (consent withdrawn): lake, artefacts, retired copies, the published tables
    rebuilt without them, their Dagster runs and partitions; the models that learnt from them
    deleted (their cards kept as tombstones), and the study retrained if its file says so."""
    store = Store(args.store)
    try:
        with store_session(store.root, "metorigin forget", wait=not args.no_wait, on_wait=tell):
            home = use_store_instance(store.root)
            require_instance_free(home)
            report = forget_patient(store, args.patient, getpass.getuser(), args.why, datetime.now())
            print("\n".join(report.lines()), flush=True)
            print(f"run logs naming the patient deleted: {_forget_in_logs(store, args.patient, report.scans)}")
            runs = forget_in_instance(get_instance(store.root), home, args.patient, report.scans)
            print(f"Dagster runs naming the patient or their scans deleted from {home}: {runs}")
            if store.duckdb_path.exists():
                print("rebuilding the feature store without the patient ...", flush=True)
                with run_log(new_log_path(store.root), verbose=False):
                    rebuilt = _rebuild_feature_store(
                        store, registry=bool(report.models_removed or report.models_marked)
                    )
                if not rebuilt.ok:
                    print(summary(rebuilt, store.root), file=sys.stderr)
                    return 1
            if report.models_removed:
                code = _retrain_or_say_how(store)
                if code:
                    return code
    except MetoriginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"done: every trace of the patient is erased from {store.root}; the erasure is logged in {report.log_path}")
    return 0


def _forget_in_logs(store, patient_id: str, scans: list[str]) -> int:
    """The CLI's run logs (`<store>/logs/`) that name the patient or one of their scans."""
    names = [n.encode() for n in (patient_id, *scans)]
    logs = [p for p in sorted((store.root / "logs").glob("*.log")) if any(n in p.read_bytes() for n in names)]
    for path in logs:
        path.unlink()
    return len(logs)


def _rebuild_feature_store(store, registry: bool):
    """dbt's tables built again from the erased lake, under the study the store holds, and the
    published registry when models were deleted or marked (it is the study's, rebuilt with its results)."""
    defs, instance = store_definitions(store.root)
    # model_promotions: a promoted model deleted changes its data version, so the scans are scored again
    selection = "group:feature_store" + (" or key:feature_store/models or key:model_promotions" if registry else "")
    return run_selection(defs, instance, selection, progress=lambda _: None, force=True)


def _retrain_or_say_how(store) -> int:
    """The study retrained without the patient when the store's study file says
    `retrain_on_forget: true`; otherwise the command that does it. Returns an exit code."""
    if not store_config(store.root).study().retrain_on_forget:
        print(
            f"the study has no models in place of those deleted until it is retrained: `metorigin run --cohort COHORT "
            f"--store {store.root} --select 'group:study' --force` (or set `retrain_on_forget: true` in the study "
            "file to retrain at once), then promote the new models",
            flush=True,
        )
        return 0
    print("retraining the study without the patient (the study file's retrain_on_forget) ...", flush=True)
    defs, instance = store_definitions(store.root)
    with run_log(new_log_path(store.root), verbose=False):
        retrained = run_selection(defs, instance, STUDY_SELECTION, progress=lambda _: None, force=True)
    print(summary(retrained, store.root), file=sys.stdout if retrained.ok else sys.stderr)
    return 0 if retrained.ok else 1
