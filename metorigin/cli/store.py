"""Commands that read or change a store: `tables`, `sql`, `report`, `models list|promote`, and
`ibsi-report` (the feature set's IBSI compliance, which needs no store)."""

from __future__ import annotations

import getpass
import shutil
import sys
import threading
from contextlib import contextmanager
from datetime import datetime

import duckdb
import pandas as pd

from metorigin.cli.session import aligned, new_log_path, published_store, run_log, store_definitions, summary, tell
from metorigin.core.errors import MetoriginError
from metorigin.core.lease import store_session
from metorigin.core.store import Store
from metorigin.imaging.ibsi import compliance_table, report_markdown
from metorigin.report.paper_tables import READS, paper_tables
from metorigin.report.store_report import build_report, read_store_tables
from metorigin.report.store_summary import has_views_over_lake, registry_listing
from metorigin.runtime.execution import RunReport
from metorigin.runtime.runner import promote


def cmd_tables(args) -> int:
    store = published_store(args.store)
    if store is None:
        return 2

    tables, robustness_hash = read_store_tables(store, READS)
    paper = paper_tables(tables, robustness_hash)
    chosen = [paper[name] for name in (args.table or paper) if name in paper]
    absent = [name for name in (args.table or []) if name not in paper]
    for name in absent:
        print(
            f"error: no {name} in this store yet; `metorigin report --store {args.store}` says what fills it",
            file=sys.stderr,
        )
    comment = {"text": "", "csv": "# ", "latex": "% "}[args.format]
    for table in chosen:
        print(f"{comment}{table.title}")
        if args.format == "csv":
            print(table.frame.to_csv(index=False), end="")
        elif args.format == "latex":
            latex = table.frame.to_latex(index=False, escape=True)
            print(latex.replace("★", r"$\star$").replace("†", r"$\dagger$"), end="")
        else:
            print(aligned(table.frame))
        print("".join(f"{comment}{note}\n" for note in table.notes))
    return 2 if absent else 0


def cmd_models_list(args) -> int:
    store = published_store(args.store)
    if store is None:
        return 2
    listing = registry_listing(store)
    if listing is None:
        print(
            f"error: no model registry in {args.store} yet: train first (`metorigin run --store {args.store} ...`)",
            file=sys.stderr,
        )
        return 2
    frame, promotions = listing
    print(aligned(frame.fillna("")))
    print(
        f"\n{int(frame['promoted'].sum())} promoted ({', '.join(sorted(frame.loc[frame['promoted'], 'arm']))})"
        if frame["promoted"].any()
        else f"\nnone promoted: metorigin models promote MODEL_ID --why TEXT --store {args.store}"
    )
    deleted = int(frame["removed"].notna().sum()) if "removed" in frame.columns else 0
    if deleted:
        print(
            f"{deleted} deleted (`removed`): a patient they learnt from was erased; they score no one, promoted or "
            f"not. Retrain: metorigin run --cohort COHORT --store {args.store} --select 'group:study' --force"
        )
    if not promotions.empty:
        print("\npromotions, oldest first:\n" + aligned(promotions))
    return 0


def cmd_models_promote(args) -> int:
    """A `promote_models` run with the promotion as its config, in the store's instance and under
    its lease (the log appended, the registry tables published); the scans' predictions go stale and are re-scored
    by the next `metorigin run` or the sensor."""
    store = args.store.absolute()
    if not (store / "study.yaml").is_file():
        print(f"error: {store} is not a trained store (no study.yaml)", file=sys.stderr)
        return 2
    try:
        with store_session(store, "metorigin models promote", wait=not args.no_wait, on_wait=tell):
            defs, instance = store_definitions(store)
            config = {"promote": args.model_ids, "why": args.why, "who": args.who or getpass.getuser()}
            with run_log(new_log_path(store), args.verbose):
                report = promote(defs, instance, config, RunReport())
    except MetoriginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not report.ok:
        print(summary(report, store), file=sys.stderr)
        return 1
    print(
        f"promoted {', '.join(args.model_ids)}: every scan's predictions are now stale; `metorigin run` (or the sensor "
        "under `metorigin ui`) scores them with it"
    )
    return 0


def cmd_sql(args) -> int:
    """A read-only query, stopped at `--timeout` seconds; the first `--limit` rows printed as a table,
    or every row streamed as CSV (`--csv`), with the count on stderr."""
    store = Store(args.store)
    try:
        with store.connect_read_only() as con, _deadline(con, args.timeout):
            con.execute(args.query)
            if args.csv:
                print(f"{_stream_csv(con)} row(s) written", file=sys.stderr)
                return 0
            frame, more = _first_rows(con, args.limit)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except duckdb.InterruptException:
        print(
            f"error: the query ran past --timeout {args.timeout:g} s and was stopped. Fix: narrow it (a WHERE, an "
            "aggregate, a LIMIT), or allow it longer with --timeout SECONDS",
            file=sys.stderr,
        )
        return 2
    except duckdb.Error as exc:
        return _refused(exc, store, args.store)
    print(frame.to_string(index=False) if len(frame.columns) else "(no columns)")  # every cell in full
    if more:
        print(
            f"(the first {args.limit:,} rows; the query gives more: --limit N prints more, --csv writes them all)",
            file=sys.stderr,
        )
    return 0


@contextmanager
def _deadline(con: duckdb.DuckDBPyConnection, seconds: float):
    """DuckDB's own interrupt after `seconds` (it stops the query, and a fetch, where it runs)."""
    timer = threading.Timer(seconds, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _first_rows(con: duckdb.DuckDBPyConnection, limit: int) -> tuple[pd.DataFrame, bool]:
    """At most `limit` rows of the result (fetched in DuckDB's chunks, never all of a large result)
    and whether there were more."""
    frame = con.fetch_df_chunk(1)  # kept even when empty: it carries the columns
    while len(frame) <= limit and not (chunk := con.fetch_df_chunk(1)).empty:
        frame = pd.concat([frame, chunk], ignore_index=True)
    return frame.head(limit), len(frame) > limit


def _stream_csv(con: duckdb.DuckDBPyConnection) -> int:
    """Every row of the result as CSV on stdout, a chunk at a time (the header even when there is
    none); the number of rows."""
    written, header = 0, True
    while not (chunk := con.fetch_df_chunk(8)).empty or header:
        chunk.to_csv(sys.stdout, index=False, header=header)
        written, header = written + len(chunk), False
    return written


def _refused(exc: duckdb.Error, store: Store, where) -> int:
    # What DuckDB refuses on a connection opened with `READ_ONLY_CONFIG`: files, extensions and
    # secrets (PermissionException); ATTACH of a database file this process has open already
    # (ResourceInUseException); SET on the locked configuration; writes to the read-only file.
    reason = str(exc).strip().splitlines()[0]
    locked = ("the configuration has been locked", "read-only mode", "belongs to an attached database")
    refused = isinstance(exc, (duckdb.PermissionException, duckdb.ResourceInUseException))
    if not (refused or any(marker in reason for marker in locked)):
        print(f"error: {exc}", file=sys.stderr)
        return 2
    what = (
        "read-only: it creates, changes and attaches nothing"
        if "read-only mode" in reason
        else "read-only and has no file access"
    )
    print(
        f"error: refused: `metorigin sql` is {what} (DuckDB: {reason}). "
        "Query the store's tables; to save a result, use --csv and redirect it to a file.",
        file=sys.stderr,
    )
    # a view over the lake, published by metorigin before it built tables only?
    views = has_views_over_lake(store) if "/lake/" in reason else 0
    if views:
        print(
            f"This store's feature store has {views} views over the lake, from an older metorigin: rebuild "
            f"it with `metorigin run --cohort COHORT --store {where} --select 'group:\"feature_store\"'`.",
            file=sys.stderr,
        )
    return 2


def cmd_report(args) -> int:
    store = published_store(args.store)
    if store is None:
        return 2
    run = datetime.now().strftime("cli-%Y%m%d-%H%M%S") + ("-anonymous" if args.anonymous else "")
    # Under the store's lease: a report read while `forget` erases a patient could be written after
    # `forget` deleted every report, and show them.
    try:
        with store_session(store.root, "metorigin report", wait=True, on_wait=tell):
            report = build_report(store, run, args.cohort, anonymous=args.anonymous)
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(report.html, args.out)
    except MetoriginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for title in report.missing:
        print(f"incomplete: {title} (the report says what is missing and what fills it)")
    print(f"{len(report.figures)} figures, {len(report.tables)} tables (SVG, PNG, CSV): {report.folder}")
    print(f"report: {(args.out or report.html).resolve()}")
    return 0


def cmd_ibsi_report(args) -> int:
    table = compliance_table()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report_markdown(table))
    print(
        f"{args.out}: "
        + ", ".join(f"{n} {v}" for v, n in table["verdict"].str.split(":").str[0].value_counts().items())
    )
    return 0
