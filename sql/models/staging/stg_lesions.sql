-- One row per connected component of a scan's lesion mask, included or not.
select
    cast(lesion_id as varchar) as lesion_id,
    cast(scan_id as varchar) as scan_id,
    cast(patient_id as varchar) as patient_id,
    cast(lesion_number as integer) as lesion_number,
    cast(voxel_count as bigint) as voxel_count,
    cast(volume_ml as double) as volume_ml,
    cast(max_diameter_mm as double) as max_diameter_mm,
    cast(centroid_x_mm as double) as centroid_x_mm,
    cast(centroid_y_mm as double) as centroid_y_mm,
    cast(centroid_z_mm as double) as centroid_z_mm,
    cast(bbox_x0 as integer) as bbox_x0,
    cast(bbox_x1 as integer) as bbox_x1,
    cast(bbox_y0 as integer) as bbox_y0,
    cast(bbox_y1 as integer) as bbox_y1,
    cast(bbox_z0 as integer) as bbox_z0,
    cast(bbox_z1 as integer) as bbox_z1,
    cast(mean_hu as double) as mean_hu,
    cast(included as boolean) as included,
    cast(exclusion_reason as varchar) as exclusion_reason
from {{ source('lake', 'lesions') }}
