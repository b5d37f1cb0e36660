-- External validation: Table 3's columns for every frozen model of `models_store` on this cohort
-- (patient-bootstrap intervals), with the model's own test AUC (`internal_auc`) beside them.
select * from {{ source('lake', 'external_metrics') }}
