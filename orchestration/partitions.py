"""Per-scan partitions. Dynamic, because cohorts grow: new scans arrive and are added as keys."""

from dagster import DynamicPartitionsDefinition

scan_partitions = DynamicPartitionsDefinition(name="scans")
