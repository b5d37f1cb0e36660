"""`model_promotions`: every promotion of a trained model (which model of an arm scores new patients,
chosen by a person, logged with who, when and why). Its data version is the promoted set, so
promoting another model makes every scan's predictions stale and they are scored again."""

import hashlib
import json

import dagster as dg
import pandas as pd

from metorigin.core.schemas import MODEL_PROMOTIONS, conform
from metorigin.defs.common.names import COHORT_GROUP, KINDS
from metorigin.defs.common.resources import StoreResource
from metorigin.inference.registry import (
    NO_MODEL,
    PromotionError,
    append_promotions,
    deleted_promoted,
    has_lake_table,
    promoted_ids,
    read_promotions,
    registry_models,
)


class PromotionConfig(dg.Config):
    """Config of `model_promotions` (the `promote_models` job's launchpad): empty `promote` republishes the log."""

    promote: list[str] = []  # model ids of the `models` table (at most one per arm)
    why: str = ""  # required with `promote`: the reason, for the log
    who: str = ""  # default: the user running the step


# In the cohort group, so that ingest (which always runs, before the per-scan runs) keeps it
# materialised: the per-scan predictions depend on it, and an upstream never materialised would
# leave them stale for ever.
@dg.asset(group_name=COHORT_GROUP, kinds=KINDS)
def model_promotions(context: dg.AssetExecutionContext, config: PromotionConfig, store: StoreResource):
    """Every promotion, in order (`<store>/promotions.jsonl`); with `promote` (the `promote_models`
    job's launchpad, or `metorigin models promote`) it first appends new ones. Its data version is
    the promoted set: promoting another model makes every scan's predictions stale.

    A promotion names a model id, whose file is content-addressed and checked by sha256 when it
    scores: the promoted model of an arm never changes unless someone promotes another."""
    target = store.store()
    try:
        if config.promote:
            if not has_lake_table(target, "models"):
                raise PromotionError("no model is registered yet: train the study first (`metorigin run`)")
            for entry in append_promotions(
                target, target.read_lake("models"), config.promote, config.why, config.who, context.run_id
            ):
                context.log.info(f"promoted {entry['model_id']} ({entry['arm']}): {entry['why']} ({entry['who']})")
        promotions = read_promotions(target)
    except PromotionError as refused:
        raise dg.Failure(str(refused)) from refused
    in_use = promoted_ids(promotions)
    # A promoted model `forget` deleted changes the version too: the scans it scored are scored again
    # (by no model of its arm, until another is promoted). Without one, the version is as it was.
    registered = in_use and has_lake_table(target, "models")
    deleted = deleted_promoted(registry_models(target), promotions) if registered else []
    payload = [sorted(in_use.items()), deleted] if deleted else sorted(in_use.items())
    version = dg.DataVersion(hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:24])
    in_use_text = ", ".join(f"{arm}: {mid}" for arm, mid in sorted(in_use.items())) or NO_MODEL
    rows = [{"sequence": n, **entry} for n, entry in enumerate(promotions, start=1)]
    log = conform(pd.DataFrame(rows, columns=MODEL_PROMOTIONS.names), MODEL_PROMOTIONS)
    return dg.Output(log, data_version=version, metadata={"in_use": in_use_text})
