-- The radiomics arm refitted on other seeded test splits (repeat 0: the study's split): every
-- pipeline's test AUC per split, for the spread one split's number sits in.
select * from {{ source('lake', 'split_repeats') }}
