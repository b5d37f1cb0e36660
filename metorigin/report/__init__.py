"""The study report (tables, curves, figures, the page) and what the CLI prints of a store, outside Dagster."""
