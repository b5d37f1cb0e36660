-- The contract name SQL users query (see README, 'The store'); typed in stg_lesions.
select * from {{ ref('stg_lesions') }}
