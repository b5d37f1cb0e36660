"""The run machinery: how a selection becomes Dagster runs, in this process or elsewhere.

How a run flows (`metorigin run`, the UI and the daemon alike):
1. `home.py` opens the store's Dagster instance (`<store>/.dagster/`), `metorigin.definitions`
   builds the definitions of the store and study.
2. `runner.run_selection` takes the selection group by group, in the order they depend on each
   other (cohort, imaging, feature store, study), asking `staleness.py` (Dagster's stale/fresh
   resolver, read in batches for thousands of scans) what is stale or missing: only that runs.
3. Each group runs as its named job (`defs/jobs.py`) through `execution.executor`, which executes
   the job in this process and gathers what happened into a `RunReport` (failed steps, checks,
   notices).
4. The imaging group runs one `process_scan` run per scan (`scan_runs.process_scans`): one after
   another, or several at a time in worker processes, or its steps on a Dask cluster
   (`placement.py` picks the executor, `cluster.py` runs it). Under the daemon, the sensor and the
   nightly schedule launch `process_scans` batches (`batches.py` finds the scans awaiting them),
   which run the same per-scan runs.
5. `versions.py` gives each Python asset its code version (a revision and the study settings it
   reads), which is what makes a changed setting re-run only the steps that read it.
`erasure.py` is the instance's side of `metorigin forget`.
"""
