"""The trained models in use, outside Dagster: the registry, the promotions, scoring a scan's lesions.

Above the pure imaging and study code (it reads both: a scan's acquisition against a model's
inclusion criteria, the model files), below the Dagster wiring."""
