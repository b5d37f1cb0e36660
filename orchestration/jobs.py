"""Jobs: named asset selections that the sensor, the schedule and the UI launch."""

import dagster as dg

from .cohort_assets import COHORT_GROUP
from .partitions import scan_partitions
from .scan_assets import PER_SCAN_GROUP

ingest_cohort_job = dg.define_asset_job(
    "ingest_cohort",
    selection=dg.AssetSelection.groups(COHORT_GROUP),
    description="Read and validate patients.csv and scans.csv; register included scans as partitions.",
)

process_scan_job = dg.define_asset_job(
    "process_scan",
    selection=dg.AssetSelection.groups(PER_SCAN_GROUP),
    partitions_def=scan_partitions,
    description="Segmentation, lesions, radiomics features and CNN slices of one scan.",
)
