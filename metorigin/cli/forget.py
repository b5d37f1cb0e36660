"""`metorigin forget`: erase a patient whose consent is withdrawn, from the store and its instance."""

from __future__ import annotations

import getpass
import sys
from datetime import datetime

from metorigin.cli.session import new_log_path, run_log, store_definitions, summary, tell
from metorigin.core.errors import MetoriginError
from metorigin.core.forgetting import forget_patient
from metorigin.core.lease import store_session
from metorigin.core.store import Store
from metorigin.runtime.erasure import forget_in_instance, require_instance_free
from metorigin.runtime.home import get_instance, use_store_instance
from metorigin.runtime.runner import run_selection


def cmd_forget(args) -> int:
    """Erase a patient (consent withdrawn): lake, artefacts, retired copies, the published tables
    rebuilt without them, their Dagster runs and partitions; models trained on them marked."""
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
                    rebuilt = _rebuild_feature_store(store)
                if not rebuilt.ok:
                    print(summary(rebuilt, store.root), file=sys.stderr)
                    return 1
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


def _rebuild_feature_store(store):
    """dbt's tables built again from the erased lake, under the study the store holds."""
    defs, instance = store_definitions(store.root)
    return run_selection(defs, instance, "group:feature_store", progress=lambda _: None, force=True)
