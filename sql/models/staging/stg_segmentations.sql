-- One row per processed scan: where its label map is and what it measures.
select
    cast(scan_id as varchar) as scan_id,
    cast(patient_id as varchar) as patient_id,
    cast(method as varchar) as method,
    cast(model_id as varchar) as model_id,
    cast(resampled as boolean) as resampled,
    cast(label_map as varchar) as label_map,
    cast(liver_volume_ml as double) as liver_volume_ml,
    cast(lesion_volume_ml as double) as lesion_volume_ml,
    cast(liver_parenchyma_mean_hu as double) as liver_parenchyma_mean_hu,
    cast(voxel_volume_ml as double) as voxel_volume_ml
from {{ source('lake', 'segmentations') }}
