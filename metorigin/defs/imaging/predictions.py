"""`scan_predictions`: a scan that arrives after training scored in its own `process_scan` run by the
promoted models, with nothing refitted (metorigin/inference/ does the scoring)."""

import dagster as dg
import pandas as pd

from metorigin.core.errors import ScanProcessingError
from metorigin.core.markdown import markdown_table
from metorigin.defs.common.names import PER_SCAN_GROUP, PROMOTIONS
from metorigin.defs.common.partitions import scan_partitions
from metorigin.defs.common.resources import SettingsResource, StoreResource
from metorigin.defs.imaging.assets import failing_only_this_scan
from metorigin.inference.lesions import call_rows, finish, made_under, score_lesions, wide_features, with_notes
from metorigin.inference.registry import (
    NO_MODEL,
    deleted_promoted,
    has_lake_table,
    promoted_models,
    read_promotions,
    registry_models,
)
from metorigin.runtime.placement import GPU_STEP
from metorigin.study.arm import LesionData
from metorigin.study.scoring import ScoringRefused


@dg.asset(
    partitions_def=scan_partitions,
    group_name=PER_SCAN_GROUP,
    kinds={"python", "parquet"},
    op_tags=GPU_STEP,  # the DenseNet's forward passes
    # Read in the body, once a model is promoted: most scans of a cohort being built are scored by none.
    deps=[PROMOTIONS, *(dg.AssetKey(name) for name in ("lesions", "radiomics_features", "lesion_slices"))],
)
def scan_predictions(
    context: dg.AssetExecutionContext, store: StoreResource, settings: SettingsResource
) -> pd.DataFrame:
    """Every included lesion of the scan scored by the promoted models, one per arm that scores new
    patients (frozen: nothing is refitted), with the scan's out-of-distribution notes; the patient-level
    call is `patient_predictions` in the feature store. No promoted model: no rows, and a note."""
    target, study, scan_id = store.store(), settings.settings(), context.partition_key
    # The registry (its table and every model's card) only once a model is promoted, like the inputs.
    promotions = read_promotions(target)
    registry = registry_models(target) if promotions and has_lake_table(target, "models") else {}
    with failing_only_this_scan():
        try:
            models = promoted_models(registry, promotions)
            deleted = deleted_promoted(registry, promotions)
            gone = f"promoted and since deleted, until the study is retrained: {'; '.join(deleted)}" if deleted else ""
            if not models:  # said on the materialisation, not as a log line: an event each, for every scan
                context.add_output_metadata(
                    {"note": f"{gone or NO_MODEL}; nothing scored (metorigin models promote MODEL_ID ...)"}
                )
                return finish(pd.DataFrame(), study)
            lesions, radiomics_features, lesion_slices = (
                target.read_lake(name, [scan_id]) for name in ("lesions", "radiomics_features", "lesion_slices")
            )
            wide = wide_features(radiomics_features)
            under = made_under(
                radiomics_features["settings_hash"], lesion_slices["settings_hash"], lesions["settings_hash"]
            )
            scored = LesionData(wide, lesions, lesion_slices, target.root)
            predictions = score_lesions(target.root, models, registry, scored, under)
        except ScoringRefused as refused:
            raise ScanProcessingError(scan_id, "scoring", refused.problem, refused.fix) from refused
    if predictions.empty:
        return finish(predictions, study)
    scans = target.read_lake("scans")
    predictions = with_notes(predictions, models, registry, scans[scans["scan_id"] == scan_id], scored)
    table = finish(predictions, study)
    context.add_output_metadata(
        {
            "n_lesions": int(wide["lesion_id"].nunique()),
            "models": ", ".join(sorted(table["model_id"].unique())),
            "out_of_distribution": bool(table["out_of_distribution"].any()),
            "predictions": dg.MetadataValue.md(markdown_table(call_rows(table, study))),
            **({"not_scored_by": gone} if gone else {}),
        }
    )
    return table
