"""Great Expectations 1.x suites (suites.py); orchestration/checks.py registers the checks that run them."""
