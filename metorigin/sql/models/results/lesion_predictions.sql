-- Every model's probability of a pancreatic primary for each lesion: the test patients' lesions
-- (evaluation = 'test'), out-of-fold predictions for the radiomics and baseline models' training
-- patients, and the DenseNet's and the combined model's validation patients.
select * from {{ source('lake', 'radiomics_predictions') }}
union all by name
select * from {{ source('lake', 'baseline_predictions') }}
union all by name
select * from {{ source('lake', 'densenet_predictions') }}
union all by name
select * from {{ source('lake', 'combined_predictions') }}
