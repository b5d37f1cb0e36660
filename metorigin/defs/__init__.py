"""The Dagster wiring, one subpackage per asset group (cohort, imaging, feature_store, study,
validation), each giving its own `Definitions` (its `definitions(study)`), which
`metorigin.definitions` merges. No group imports another group's modules (an import contract
says so): what they share is in `common/` (names, partitions, resources, check results) and the
named jobs they all target are in `jobs.py`.
"""
