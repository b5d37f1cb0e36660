-- Every model's probability of a pancreatic primary for each lesion: the test patients' lesions
-- (evaluation = 'test'), out-of-fold predictions for the radiomics and baseline models' training
-- patients, and the DenseNet's and the combined model's validation patients. One arm's rows after
-- another (metorigin/arms/).
{{ arm_union('predictions') }}
