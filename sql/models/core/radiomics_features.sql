-- The contract name SQL users query (see README, 'The store'); typed in stg_radiomics_features.
select * from {{ ref('stg_radiomics_features') }}
