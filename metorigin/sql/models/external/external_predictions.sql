-- Another store's frozen models (`models_store`) on this cohort's labelled lesions: one row per
-- lesion and model, with the model id, its settings hash and the scan's out-of-distribution notes.
select * from {{ source('lake', 'external_predictions') }}
