-- Per-class metrics of every model on the test patients, lesion and patient level, at 0.5 and at a
-- threshold chosen without them (`threshold` names where), each with its 95% interval; `flag` says
-- where an interval is degenerate (zero width: every bootstrap resample gave the same value).
select * from {{ source('lake', 'metric_intervals') }}
