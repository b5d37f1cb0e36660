-- The contract name SQL users query (see README, 'The store'); typed in stg_segmentations.
select * from {{ ref('stg_segmentations') }}
