"""The `study_report` asset: the paper's figures and tables as one HTML page after every study run.

It reads the published feature store (so it follows the dbt steps that publish the results) and
writes under artifacts/report/<run id>/; nothing else reads it, so it holds no writer lease.
"""

import base64
from pathlib import Path

import dagster as dg

from metorigin.core.markdown import markdown_table
from metorigin.defs.common.names import STUDY_GROUP
from metorigin.defs.common.resources import CohortResource, StoreResource
from metorigin.report.store_report import build_report

RESULT_TABLES = (
    "cohort_characteristics",
    "tumor_burden",
    "patient_split",
    "feature_importance",
    "model_metrics",
    "metric_intervals",
    "model_comparisons",
    "lesion_predictions",
    "cv_predictions",
    "permutation_null",
    "split_repeats",
)


@dg.asset(
    group_name=STUDY_GROUP,
    deps=[dg.AssetKey(["feature_store", name]) for name in RESULT_TABLES],
    kinds={"python", "html"},
    description="The study report: cohort flow, example lesions, Tables 1-3, the per-lesion comparison, ROC and "
    "calibration curves, feature importance and the DenseNet's training, as one self-contained HTML page",
)
def study_report(context: dg.AssetExecutionContext, store: StoreResource, cohort: CohortResource):
    report = build_report(store.store(), context.run_id, Path(cohort.path))
    context.log.info(f"study report: {report.html}")
    if report.missing:
        context.log.warning("incomplete sections (the report says what is missing): " + ", ".join(report.missing))
    tables = {
        f"table_{name[-1]}": dg.MetadataValue.md(
            markdown_table(table.frame.to_dict("records")) + "".join(f"\n\n{note}" for note in table.notes)
        )
        for name, table in report.paper.items()
        if name in ("table1", "table3")
    }
    return dg.MaterializeResult(
        metadata={
            **tables,
            "report": dg.MetadataValue.path(str(report.html)),
            "figures": len(report.figures),
            "incomplete_sections": ", ".join(report.missing) or "none",
            "figures_preview": dg.MetadataValue.md(
                "\n\n".join(
                    f"**{title}**\n\n![{name}](data:image/png;base64,{base64.b64encode(png).decode()})"
                    for name, (title, png) in report.thumbnails.items()
                )
                or "no figure"
            ),
        }
    )
