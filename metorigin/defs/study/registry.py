"""`models`: the registry of every model the study trained (one row each, kept across retrainings, so
a promoted model stays scorable after the study moves on). Promotions are `model_promotions` (group
cohort) and scoring new scans is `scan_predictions` (group imaging); metorigin/inference/ holds the
functions all three call."""

from datetime import datetime, timezone

import dagster as dg
import pandas as pd

from metorigin.arms import METRIC_TABLES
from metorigin.core.schemas import MODELS, conform
from metorigin.defs.common.names import KINDS, STUDY_GROUP
from metorigin.defs.common.resources import StoreResource
from metorigin.inference.registry import (
    has_lake_table,
    promoted_ids,
    promoted_table,
    read_promotions,
    registry_row,
)


@dg.asset(group_name=STUDY_GROUP, kinds=KINDS, ins={name: dg.AssetIn(name) for name in METRIC_TABLES})
def models(context: dg.AssetExecutionContext, store: StoreResource, **metrics) -> pd.DataFrame:
    """The registry: every model the study trained, kept across retrainings (a promoted model stays
    scorable when the study moves on), with its card's provenance and its file's sha256."""
    target = store.store()
    known = (
        target.read_lake("models").set_index("model_id", drop=False).to_dict("index")
        if has_lake_table(target, "models")
        else {}
    )
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = dict(known)
    for table in metrics.values():
        for _, row in table.iterrows():
            rows[row["model_id"]] = registry_row(target, row, known, now)
    # reindex: rows registered by older code may lack a column added since, or hold one dropped
    frame = pd.DataFrame(list(rows.values())).reindex(columns=MODELS.names)
    registry = conform(frame.fillna({"needs_retraining": False}), MODELS)
    registry = registry.sort_values(["arm", "model_id"])
    in_use = promoted_ids(read_promotions(target))
    context.add_output_metadata(
        {"n_models": len(registry), "promoted": dg.MetadataValue.md(promoted_table(registry, in_use))}
    )
    return registry
