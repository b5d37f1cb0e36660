-- Nested cross-validation of every radiomics model on the training patients: one row per model,
-- repeat and outer fold (AUC, accuracy, the hyper-parameters tuned inside the fold, fold sizes).
select * from {{ source('lake', 'radiomics_cv_folds') }}
