-- Table 3: one row per model (and resampler), AUC and accuracy on the test patients with 95%
-- patient-bootstrap intervals, patient-level AUC; the radiomics and baseline rows also carry nested
-- cross-validation on the training patients. One arm's rows after another (metorigin/arms/); arms
-- add their own columns (by name), and a column an arm lacks is NULL there.
{{ arm_union('metrics') }}
