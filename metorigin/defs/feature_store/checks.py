"""The feature store's own check: Great Expectations on `lesion_features`, blocking the training
matrix (and so the study) when it fails. (The other checks are declared on the assets that compute them.)"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from metorigin.defs.common.checks import DATA_QUALITY, suite_check
from metorigin.defs.common.names import LESION_FEATURES
from metorigin.defs.common.resources import SettingsResource, StoreResource
from metorigin.imaging.radiomics import feature_names
from metorigin.quality.suites import lesion_features_suite


@dg.asset_check(
    asset=LESION_FEATURES,
    blocking=True,
    name=DATA_QUALITY,
    description="Exact feature set of the study's radiomics parameter file, no unexplained missing "
    "values, all finite, positive shape volumes, first-order HU within what CT can store "
    "(Great Expectations).",
)
def lesion_features_quality(store: StoreResource, settings: SettingsResource) -> dg.AssetCheckResult:
    with store.store().connect_read_only() as con:
        wide = con.execute("select * from lesion_features").df()
        undefined = con.execute(
            "select lesion_id, feature_name from radiomics_features where undefined_reason is not null"
        ).df()
    names = list(feature_names(Path(settings.settings().radiomics.params_file)))
    return suite_check(lesion_features_suite(wide, undefined, names))
