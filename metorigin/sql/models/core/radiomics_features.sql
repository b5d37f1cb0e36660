-- The contract name SQL users query (see README, 'The store'); typed in stg_radiomics_features.
-- Rows of included scans only: a scan that left the cohort, failed its checks or has unusable
-- statistics is not counted (why: scans.exclusion_reason), although its earlier results stay in the lake.
select t.*
from {{ ref('stg_radiomics_features') }} as t
semi join {{ ref('scans') }} as s on s.scan_id = t.scan_id and s.included
