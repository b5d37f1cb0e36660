"""Blocking Dagster asset checks that run the Great Expectations suites.

A failed check stops what is downstream of its asset in the same run, and its result in the UI
lists each failed expectation with the ids of the rows that broke it.
"""

import dagster as dg

from orchestration.metadata import markdown_table
from orchestration.resources import StoreResource

from .suites import SuiteResult, lesion_features_suite

LESION_FEATURES = dg.AssetKey(["feature_store", "lesion_features"])


def check_result(result: SuiteResult, asset_key=None, check_name: str = "data_quality") -> dg.AssetCheckResult:
    rows = [{"expectation": f.expectation, "column": f.column, "rows": ", ".join(f.rows[:20]) +
             (" ..." if len(f.rows) > 20 else ""), "n_rows": len(f.rows), "detail": f.detail}
            for f in result.failures]
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=check_name, passed=result.success, severity=dg.AssetCheckSeverity.ERROR,
        description=result.summary(),
        metadata={"failures": dg.MetadataValue.md(markdown_table(rows, empty="none")),
                  "n_failed_expectations": len(result.failures),
                  "messages": dg.MetadataValue.text("\n".join(result.lines()))})


@dg.asset_check(asset=LESION_FEATURES, blocking=True, name="data_quality",
                description="Exact feature set, no unexplained missing values, all finite, positive shape volumes, "
                            "first-order HU within what CT can store (Great Expectations).")
def lesion_features_quality(store: StoreResource) -> dg.AssetCheckResult:
    from assets.radiomics import feature_names

    with store.store().connect_read_only() as con:
        wide = con.execute("select * from lesion_features").df()
        undefined = con.execute("select lesion_id, feature_name from radiomics_features "
                                "where undefined_reason is not null").df()
    return check_result(lesion_features_suite(wide, undefined, list(feature_names())))
