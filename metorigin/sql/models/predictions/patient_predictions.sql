-- The patient-level call of each promoted model: the mean of the probabilities of the patient's
-- lesions (the study's patient-level score) and the class at the cut-off 0.5. `patient_status` says
-- what the number is: `unlabelled` (no label in patients.csv: a prediction), `seen in training`
-- (a training or validation patient of the model: not a test), or `not seen` (a test patient, or a
-- labelled patient who arrived after training).
select
    p.patient_id,
    p.model_id,
    p.arm,
    any_value(p.model) as model,
    count(*) as n_lesions,
    count(distinct p.scan_id) as n_scans,
    avg(p.probability) as probability,
    case when avg(p.probability) >= 0.5 then '{{ var("label_positive", "positive") }}'
         else '{{ var("label_negative", "negative") }}' end as predicted_label,
    any_value(t.label) as label,
    case when any_value(t.label) is null then 'unlabelled'
         when bool_or(p.seen_in_training) then 'seen in training'
         else 'not seen' end as patient_status,
    bool_or(p.out_of_distribution) as out_of_distribution,
    string_agg(distinct p.distribution_notes, '; ') as distribution_notes,
    any_value(p.settings_hash) as settings_hash
from {{ ref('scan_predictions') }} as p
left join {{ ref('patients') }} as t on t.patient_id = p.patient_id
group by p.patient_id, p.model_id, p.arm
