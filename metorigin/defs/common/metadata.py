"""Dagster metadata built from the base layer: each lake table's declared columns, shown in the UI."""

from __future__ import annotations

import dagster as dg

from metorigin.core.schemas import TableSchema


def table_metadata(schema: TableSchema) -> dict:
    """Definition metadata that makes the UI list the asset's columns and types."""
    return {
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(c.name, c.type.lower(), description=c.description or None) for c in schema.columns]
        )
    }


# An asset's materialisation metadata under this key is printed in the CLI's run summary: what a
# user must know although nothing failed (e.g. scans retired because they left the cohort).
NOTICE = "notice"
# How many scans' results ingest retired: the feature store is rebuilt without them.
N_RETIRED = "n_retired"
