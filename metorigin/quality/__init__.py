"""Great Expectations 1.x suites (suites.py); metorigin/defs/common/checks.py builds the checks that run them."""
