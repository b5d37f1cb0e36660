"""Great Expectations 1.x suites (suites.py) and the Dagster asset checks that run them (checks.py)."""
