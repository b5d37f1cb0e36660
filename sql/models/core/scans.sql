-- The contract name SQL users query (see README, 'The store'); typed in stg_scans.
select * from {{ ref('stg_scans') }}
