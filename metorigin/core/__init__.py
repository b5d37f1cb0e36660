"""The base layer: the study, the table schemas, the store and its manifest, errors and file habits.

It imports nothing of ours, so every other layer can build on it (contracts in pyproject.toml)."""
