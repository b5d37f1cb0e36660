-- Liver tumour burden = volume of included lesions / liver volume (the liver including its lesions),
-- per included scan and per patient (over the patient's included scans).
with lesion_totals as (
    select
        scan_id,
        count(*) filter (where included) as n_lesions,
        coalesce(sum(volume_ml) filter (where included), 0) as lesion_volume_ml
    from {{ ref('lesions') }}
    group by scan_id
),

per_scan as (
    select
        s.scan_id,
        s.patient_id,
        p.label,
        g.liver_volume_ml,
        coalesce(t.lesion_volume_ml, 0) as lesion_volume_ml,
        coalesce(t.n_lesions, 0) as n_lesions,
        g.liver_parenchyma_mean_hu
    from {{ ref('scans') }} as s
    inner join {{ ref('segmentations') }} as g on g.scan_id = s.scan_id
    inner join {{ ref('patients') }} as p on p.patient_id = s.patient_id
    left join lesion_totals as t on t.scan_id = s.scan_id
    where s.included
)

select
    'scan' as level,
    scan_id as unit_id,
    scan_id,
    patient_id,
    label,
    liver_volume_ml,
    lesion_volume_ml,
    n_lesions,
    lesion_volume_ml / nullif(liver_volume_ml, 0) as tumor_burden,
    liver_parenchyma_mean_hu
from per_scan

union all

select
    'patient' as level,
    patient_id as unit_id,
    null as scan_id,
    patient_id,
    any_value(label) as label,
    sum(liver_volume_ml) as liver_volume_ml,
    sum(lesion_volume_ml) as lesion_volume_ml,
    sum(n_lesions) as n_lesions,
    sum(lesion_volume_ml) / nullif(sum(liver_volume_ml), 0) as tumor_burden,
    avg(liver_parenchyma_mean_hu) as liver_parenchyma_mean_hu
from per_scan
group by patient_id
