-- The contract name SQL users query (see README, 'The store'); typed in stg_patients.
select * from {{ ref('stg_patients') }}
