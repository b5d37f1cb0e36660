-- Table 1 of the study, regenerated for this cohort: one row per characteristic, level and cohort.
-- Patients count when they have at least one included, processed scan. `display` is the cell as
-- the study prints it; `value` the number behind it; `row_order` the table's row order.
-- Patients whose label cell is empty form their own cohort, `unlabelled`, in every row: they are
-- measured like the others but never trained on, and must not blur a class's numbers. A cohort
-- without them has no `unlabelled` rows at all.
with patients as (
    select
        p.* replace (coalesce(p.label, 'unlabelled') as label),
        b.n_lesions,
        b.tumor_burden,
        b.liver_parenchyma_mean_hu
    from {{ ref('patients') }} as p
    inner join {{ ref('tumor_burden') }} as b on b.level = 'patient' and b.patient_id = p.patient_id
),

cohort_size as (
    select label as cohort, count(*) as n from patients group by 1
),

lesions as (
    select l.mean_hu, p.label as cohort
    from {{ ref('lesions') }} as l
    inner join {{ ref('scans') }} as s on s.scan_id = l.scan_id
    inner join patients as p on p.patient_id = s.patient_id
    where l.included and s.included
),

categorical as (
    {% for characteristic, column, order in [('Sex', 'sex', 3), ('T-Stage', 't_stage', 4),
                                            ('N-Stage', 'n_stage', 5), ('M-Stage', 'm_stage', 6)] %}
    select
        '{{ characteristic }}' as characteristic,
        coalesce({{ column }}, 'unknown') as level,
        label as cohort,
        count(*) as n,
        {{ order }} as row_order
    from patients
    group by all
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
)

select * from (
select 'n' as characteristic, '' as level, cohort, n::double as value, n::varchar as display, 1 as row_order
from cohort_size

union all

select
    'Age (median [IQR])', '', label, median(age),
    printf('%.2f [%.2f, %.2f]', median(age), quantile_cont(age, 0.25), quantile_cont(age, 0.75)), 2
from patients
group by label

union all

select
    c.characteristic, c.level, c.cohort, c.n::double,
    printf('%d (%.1f%%)', c.n, 100.0 * c.n / s.n), c.row_order
from categorical as c
inner join cohort_size as s on s.cohort = c.cohort

union all

select 'Liver lesions', 'Number', label, sum(n_lesions)::double, sum(n_lesions)::varchar, 7
from patients group by label

union all

select 'Liver lesions', 'Per patient', label, avg(n_lesions), printf('%.2f', avg(n_lesions)), 7
from patients group by label

union all

select 'Liver lesions', 'Mean HU', cohort, avg(mean_hu), printf('%.2f', avg(mean_hu)), 7
from lesions group by cohort

union all

select 'Liver parenchyma', 'Liver tumor burden', label, avg(tumor_burden),
       printf('%.1f%%', 100 * avg(tumor_burden)), 8
from patients group by label

union all

select 'Liver parenchyma', 'Mean HU', label, avg(liver_parenchyma_mean_hu),
       printf('%.2f', avg(liver_parenchyma_mean_hu)), 8
from patients group by label
)
order by row_order, characteristic, level, cohort
