"""Each model arm of metorigin/arms/ as a Dagster asset: one step per arm, writing its tables.

The arm's `train` does the work (a plain function over frames); the step only gathers what it
reads (the lake tables it names, read-only SQL on the published feature store) and writes what it
returns, with its metadata, to the lake.
"""

import inspect
from typing import Any, Iterator

import dagster as dg
from dagster_duckdb import DuckDBResource

from metorigin.arms import ARMS
from metorigin.defs.common.names import FEATURE_STORE_GROUP, KINDS, STUDY_GROUP
from metorigin.defs.common.resources import SettingsResource, StoreResource
from metorigin.study.arm import Arm, ArmInputs, ArmOutput, Markdown, NoLesionsToLearnFrom


def _metadata(values: dict[str, Any]) -> dict[str, Any]:
    return {k: dg.MetadataValue.md(v) if isinstance(v, Markdown) else v for k, v in values.items()}


def outputs(arm: Arm, output: ArmOutput) -> Iterator[dg.Output]:
    """The arm's tables in the order it declares them, each with its metadata."""
    frames = {arm.metrics_table: output.metrics, arm.predictions_table: output.predictions, **output.extras}
    if set(frames) != set(arm.tables) or not set(output.metadata) <= set(arm.tables):
        raise dg.Failure(
            f"the {arm.name} arm's train returned the tables {', '.join(sorted(frames))} (metadata for "
            f"{', '.join(sorted(output.metadata)) or 'none'}), but declares {', '.join(arm.tables)}. Fix: return "
            f"exactly the tables of its `revisions`, or give a table it returns a revision and a description "
            f"(metorigin/arms/{arm.name}.py)"
        )
    for table in arm.tables:
        yield dg.Output(frames[table], table, metadata=_metadata(output.metadata.get(table, {})))


def arm_asset(arm: Arm) -> dg.AssetsDefinition:
    """The step that trains `arm`: its inputs are the assets it reads, its outputs its tables."""

    @dg.multi_asset(
        name=arm.asset,
        group_name=STUDY_GROUP,
        description=inspect.cleandoc(arm.train.__doc__ or arm.title),
        deps=[dg.AssetKey([FEATURE_STORE_GROUP, table]) for table in arm.feature_store],
        ins={name: dg.AssetIn(name) for name in arm.reads},
        outs={table: dg.AssetOut(kinds=KINDS, description=arm.descriptions[table]) for table in arm.tables},
    )
    def train(
        context: dg.AssetExecutionContext,
        store: StoreResource,
        feature_store: DuckDBResource,
        settings: SettingsResource,
        **tables,
    ):
        def query(sql: str):
            with feature_store.get_connection() as con:
                return con.execute(sql).df()

        inputs = ArmInputs(settings.settings(), store.store(), tables, query, context.log.info)
        try:
            output = arm.train(inputs)
        except NoLesionsToLearnFrom as empty:
            raise dg.Failure(str(empty)) from empty
        yield from outputs(arm, output)

    return train


ARM_ASSETS = [arm_asset(arm) for arm in ARMS]
