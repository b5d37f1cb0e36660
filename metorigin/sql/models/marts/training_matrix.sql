-- What the classifiers learn from: included lesions of included scans, their patient (the unit
-- that must never straddle train and test) and the label, then every feature column.
-- Labelled patients only: everything the study fits reads this table and nothing else for its
-- labels (the split, feature selection, nested CV, the DenseNet, the baselines, the robustness
-- rounds), so a patient whose label cell is empty (unlabelled: measured and scored like any other,
-- see lesion_features) can never reach a training, tuning or test set.
select
    f.lesion_id,
    f.scan_id,
    p.patient_id,
    p.label,
    f.* exclude (lesion_id, scan_id, patient_id)
from {{ ref('lesion_features') }} as f
inner join {{ ref('lesions') }} as l on l.lesion_id = f.lesion_id
inner join {{ ref('scans') }} as s on s.scan_id = l.scan_id
inner join {{ ref('patients') }} as p on p.patient_id = s.patient_id
where l.included and s.included and p.label is not null
