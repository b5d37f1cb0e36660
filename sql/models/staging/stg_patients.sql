-- Patients as the contract types them; one row per valid row of patients.csv.
select
    cast(patient_id as varchar) as patient_id,
    cast(primary_site as varchar) as primary_site,
    cast(age as double) as age,
    cast(sex as varchar) as sex,
    cast(t_stage as varchar) as t_stage,
    cast(n_stage as varchar) as n_stage,
    cast(m_stage as varchar) as m_stage
from {{ source('lake', 'patients') }}
