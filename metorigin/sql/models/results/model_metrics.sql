-- Table 3: one row per model (and resampler), AUC and accuracy on the test patients with 95%
-- patient-bootstrap intervals, patient-level AUC; the radiomics and baseline rows also carry nested
-- cross-validation on the training patients. Arms add their own columns (by name); a column an arm lacks is NULL there.
select * from {{ source('lake', 'radiomics_metrics') }}
union all by name
select * from {{ source('lake', 'baseline_metrics') }}
union all by name
select * from {{ source('lake', 'densenet_metrics') }}
union all by name
select * from {{ source('lake', 'combined_metrics') }}
