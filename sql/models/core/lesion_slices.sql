-- The contract name SQL users query (see README, 'The store'); typed in stg_lesion_slices.
select * from {{ ref('stg_lesion_slices') }}
