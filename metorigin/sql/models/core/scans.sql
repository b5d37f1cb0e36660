-- The contract name SQL users query (see README, 'The store'); typed in stg_scans.
-- Every listed scan stays here whatever happens to it. A scan whose image or mask failed the
-- full-decode checks of its own run (scan_integrity), or whose stored statistics cannot be used
-- (no liver volume, no liver HU), is not valid / not included here, with the reason, so that no
-- mart counts it and one bad scan never fails the whole build. Its earlier results stay in the lake.
with checks as (
    select scan_id, status, replace(problems, chr(10), '; ') as problems
    from {{ ref('stg_scan_integrity') }}
),

unusable as (
    select
        scan_id,
        case
            when not coalesce(isfinite(liver_volume_ml) and liver_volume_ml > 0, false)
                then 'the segmentation has no liver volume'
            when not coalesce(isfinite(liver_parenchyma_mean_hu), false)
                then 'the liver parenchyma has no mean HU (no parenchyma voxel, or NaN)'
        end as reason
    from {{ ref('stg_segmentations') }}
)

select
    s.* replace (
        s.valid and coalesce(c.status, '') <> 'failed' as valid,
        s.included and coalesce(c.status, '') <> 'failed' and u.reason is null as included,
        case
            when not s.included then s.exclusion_reason
            when c.status = 'failed' then 'its files failed their checks: ' || c.problems
            when u.reason is not null then 'unusable results: ' || u.reason
        end as exclusion_reason,
        case when s.included and c.status = 'failed' then 'scan_integrity' else s.error_kind end as error_kind
    ),
    c.status as integrity_status
from {{ ref('stg_scans') }} as s
left join checks as c on c.scan_id = s.scan_id
left join unusable as u on u.scan_id = s.scan_id
