-- Wide feature table: one row per lesion with extracted features, one column per pyradiomics
-- feature (e.g. original_firstorder_Mean). Undefined values are NaN here; why is in
-- radiomics_features.undefined_reason.
pivot (
    select lesion_id, scan_id, patient_id, feature_name, feature_value
    from {{ ref('stg_radiomics_features') }}
)
on feature_name
using first(feature_value)
group by lesion_id, scan_id, patient_id
