"""Pure imaging: the cohort contract, segmentation, lesions, radiomics, slices, IBSI, the synthetic cohort.

No Dagster here: the assets that run these steps are in metorigin/defs/ (imaging/assets.py, cohort/assets.py)."""
