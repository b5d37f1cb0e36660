-- Wide feature table: one row per lesion with extracted features, one column per pyradiomics
-- feature (e.g. original_firstorder_Mean). Undefined values are NaN here; why is in
-- radiomics_features.undefined_reason.
--
-- The columns are the features the study's radiomics parameter file enables (the
-- `feature_names` variable, passed by the Dagster dbt step), not whatever the data holds: a
-- cohort without a single lesion still gets every column, and zero rows.
--
-- Pivoted through one list per lesion (values ordered by feature name, read back by position):
-- at 1,000,000 lesions it is 3x faster than PIVOT, whose 107 aggregate states per lesion spill
-- to disk. A lesion whose features are not exactly the expected ones (one missing, or rows left
-- by another parameter file) would shift positions, so it gets NULLs instead and the
-- lesion_features check fails: it must have as many rows as names, each one of the names, and
-- (lesion_id, feature_name) is unique by a dbt test.
{#- sorted in Python, as DuckDB orders feature_name below (byte order: 'MCC' before 'MaximumProbability') -#}
{% set names = var('feature_names', []) %}

with per_lesion as (
    select
        lesion_id,
        count(*) as n_features,
        count(*) filter (where feature_name in ({% for name in names %}'{{ name }}'{{ ", " if not loop.last }}{% endfor %}{% if not names %}null{% endif %})) as n_expected,
        list(feature_value order by feature_name) as feature_values
    from {{ ref('radiomics_features') }}
    group by lesion_id
)

select
    f.lesion_id,
    l.scan_id,
    l.patient_id{% for name in names %},
    case when n_features = {{ names | length }} and n_expected = {{ names | length }} then feature_values[{{ loop.index }}] end as "{{ name }}"
    {%- endfor %}
from per_lesion as f
inner join {{ ref('lesions') }} as l on l.lesion_id = f.lesion_id
