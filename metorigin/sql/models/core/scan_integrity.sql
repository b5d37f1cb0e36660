-- The contract name SQL users query: the full-decode check of each processed scan's image and
-- mask (status passed / failed / unchecked, problems with their fix, warnings, file hashes).
select * from {{ ref('stg_scan_integrity') }}
