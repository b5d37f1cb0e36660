-- Long feature table: one row per included lesion and pyradiomics feature.
select
    cast(lesion_id as varchar) as lesion_id,
    cast(scan_id as varchar) as scan_id,
    cast(patient_id as varchar) as patient_id,
    cast(feature_name as varchar) as feature_name,
    cast(feature_class as varchar) as feature_class,
    cast(feature_value as double) as feature_value,
    cast(undefined_reason as varchar) as undefined_reason,
    cast(pyradiomics_version as varchar) as pyradiomics_version,
    cast(settings_hash as varchar) as settings_hash
from {{ source('lake', 'radiomics_features') }}
