"""metorigin: a feature-store data platform for CT radiomics and deep learning.

Layers, imports pointing down (import-linter contracts in pyproject.toml): `definitions` and
`orchestration` (the Dagster wiring and the CLI) over the pure steps `imaging`, `study` and
`quality`, over the base `core`. The package's own files (dbt project, `dagster.yaml`, radiomics
parameters, IBSI phantom, example studies) are named in `core/package.py`.
"""
