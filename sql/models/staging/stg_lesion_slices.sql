-- Index of the DenseNet input slices: which row of which slice file is which lesion and slice.
select
    cast(lesion_id as varchar) as lesion_id,
    cast(scan_id as varchar) as scan_id,
    cast(patient_id as varchar) as patient_id,
    cast(slice_index as integer) as slice_index,
    cast(array_row as integer) as array_row,
    cast(lesion_area_px as integer) as lesion_area_px,
    cast(lesion_area_mm2 as double) as lesion_area_mm2,
    cast(crop_side_mm as double) as crop_side_mm,
    cast(slices_file as varchar) as slices_file
from {{ source('lake', 'lesion_slices') }}
