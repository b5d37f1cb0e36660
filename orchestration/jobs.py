"""Jobs: named asset selections that the sensor, the schedule and the UI launch."""

import dagster as dg

ingest_cohort_job = dg.define_asset_job(
    "ingest_cohort", selection=dg.AssetSelection.assets("patients", "scans"),
    description="Read and validate patients.csv and scans.csv; register included scans as partitions.")
