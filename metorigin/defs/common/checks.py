"""Every asset check of the platform, registered here and nowhere else.

Three kinds, one home: the cohort's row checks (each bad row of patients.csv or scans.csv, with
its file, line and fix), the Great Expectations suites (blocking: a failure stops what is
downstream in the same run) and dbt's tests, which dagster-dbt turns into checks on the dbt assets
by itself. Checks whose result is computed while the asset runs (they need the frame in memory)
are declared here as specs and built here as results; the asset only yields them.
"""

from __future__ import annotations

import dagster as dg

from metorigin.core.errors import CohortError
from metorigin.core.files import atomic_path
from metorigin.core.markdown import markdown_table
from metorigin.core.store import Store
from metorigin.quality.suites import SuiteResult

ROWS_VALID, DATA_QUALITY = "rows_valid", "data_quality"

PATIENTS_CHECKS = [
    dg.AssetCheckSpec(ROWS_VALID, asset="patients", description="every row of patients.csv passes the contract")
]
SCANS_CHECKS = [
    dg.AssetCheckSpec(ROWS_VALID, asset="scans", description="every row of scans.csv passes the contract"),
    dg.AssetCheckSpec(
        DATA_QUALITY,
        asset="scans",
        blocking=True,
        description="the declared columns, positive spacing, a reason for every exclusion, unique ids "
        "(Great Expectations)",
    ),
]
INPUTS_VALID, INPUT_WARNINGS = "inputs_valid", "input_warnings"
INTEGRITY_CHECKS = [
    dg.AssetCheckSpec(
        INPUTS_VALID,
        asset="scan_integrity",
        blocking=True,
        description="the image and mask decode in full: complete data, finite voxels, values a CT in HU can "
        "hold, the declared mask labels (a failure stops this scan's run; its earlier results stay)",
    ),
    dg.AssetCheckSpec(
        INPUT_WARNINGS,
        asset="scan_integrity",
        description="nothing to warn about, e.g. no declared lesion label absent from the mask (0 lesions)",
    ),
]
LESIONS_CHECKS = [
    dg.AssetCheckSpec(
        DATA_QUALITY,
        asset="lesions",
        blocking=True,
        description="the declared columns, positive volumes and diameters, included "
        "lesions at least the minimum diameter, centroids inside the image "
        "(Great Expectations)",
    )
]


MAX_ROWS_SHOWN = 100  # problems a check's metadata and the run's log show; the rest go to a file


def rows_check(
    context: dg.AssetExecutionContext, asset: str, errors: list[CohortError], store: Store
) -> dg.AssetCheckResult:
    """The cohort row check: passes when every row was usable; else lists each bad row and its fix,
    each also as a warning in the run's log. Past MAX_ROWS_SHOWN problems the metadata and the log
    show the first ones, and the whole list is a file in the store's logs (a spreadsheet of 10,000
    bad rows must not make a 1 GB event)."""
    shown = errors[:MAX_ROWS_SHOWN]
    lines = [e.message for e in shown]
    description = f"{len(errors)} row(s) of the cohort could not be used" if errors else "every row is valid"
    extra = {}
    if len(errors) > len(shown):
        full = store.root / "logs" / f"{asset}-problems-{context.run_id}.log"
        with atomic_path(full) as tmp:
            tmp.write_text("".join(f"{e.message}\n" for e in errors))
        extra["all_problems"] = dg.MetadataValue.path(str(full))
        description += f" (the first {len(shown)} here, all of them in {full})"
        lines.append(f"... and {len(errors) - len(shown)} more problem(s): every one is in {full}")
    for line in lines:
        context.log.warning(line)
    metadata = {
        "problems": dg.MetadataValue.md(
            markdown_table(
                [{"file": e.file, "line": e.row, "id": e.row_id, "problem": e.problem, "fix": e.fix} for e in shown],
                empty="No problems found.",
            )
        ),
        "n_problems": len(errors),
        "messages": dg.MetadataValue.text("\n".join(lines)),
        **extra,
    }
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=ROWS_VALID,
        passed=not errors,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata=metadata,
    )


def integrity_checks(record: dict, where: str) -> list[dg.AssetCheckResult]:
    """The scan's full-decode check (blocking) and its warnings (not blocking), each line with the
    scan's row of scans.csv and the fix, as the run summary prints them."""
    problems = (record["problems"] or "").splitlines()
    warnings = (record["warnings"] or "").splitlines()
    return [
        dg.AssetCheckResult(
            asset_key="scan_integrity",
            check_name=INPUTS_VALID,
            passed=record["status"] == "passed",
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"{len(problems)} problem(s) with the scan's files" if problems else "the files are sound",
            metadata={"messages": dg.MetadataValue.text("\n".join(f"{where}: {p}" for p in problems))},
        ),
        dg.AssetCheckResult(
            asset_key="scan_integrity",
            check_name=INPUT_WARNINGS,
            passed=not warnings,
            severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(warnings) or "nothing to warn about",
            metadata={"messages": dg.MetadataValue.text("\n".join(f"{where}: {w}" for w in warnings))},
        ),
    ]


def suite_check(result: SuiteResult, asset_key=None, check_name: str = DATA_QUALITY) -> dg.AssetCheckResult:
    """A Great Expectations suite's result as a check: each failed expectation with the ids of its rows."""
    rows = [
        {
            "expectation": f.expectation,
            "column": f.column,
            "rows": ", ".join(f.rows[:20]) + (" ..." if len(f.rows) > 20 else ""),
            "n_rows": len(f.rows),
            "detail": f.detail,
        }
        for f in result.failures
    ]
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=result.success,
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.summary(),
        metadata={
            "failures": dg.MetadataValue.md(markdown_table(rows, empty="none")),
            "n_failed_expectations": len(result.failures),
            "messages": dg.MetadataValue.text("\n".join(result.lines())),
        },
    )
