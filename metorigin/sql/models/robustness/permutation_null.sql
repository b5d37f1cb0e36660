-- The label-permutation test of the radiomics arm: per permutation (0: the observed labels) the
-- best test AUC over the pipelines and which gave it; p_value (the same on every row) is the test's.
select * from {{ source('lake', 'permutation_null') }}
