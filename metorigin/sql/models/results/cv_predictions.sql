-- Nested cross-validation: each training lesion's held-out probability, per model, repeat and fold
-- (what CV ROC curves are drawn from).
select * from {{ source('lake', 'radiomics_cv_predictions') }}
