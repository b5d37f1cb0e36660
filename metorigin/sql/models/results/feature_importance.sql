-- Table 2 and its audit trail: kept features ranked by permutation importance, dropped ones with
-- the kept feature they duplicate.
select * from {{ source('lake', 'feature_importance') }}
