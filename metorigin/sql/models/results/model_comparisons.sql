-- Every model's test AUC against the best model's (chosen by nested CV on the training patients):
-- paired patient-bootstrap difference with its 95% interval, p-value and Holm-corrected p-value.
select * from {{ source('lake', 'model_comparisons') }}
