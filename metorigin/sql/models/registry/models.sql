-- The model registry: every model the study trained (kept when the study retrains), its provenance
-- (training cohort and data hashes, settings, feature list, file sha256), its test and nested-CV
-- metrics, and `promoted`: the model in use for its arm (its arm's last promotion). Cards: the
-- model file with .json.
with registry as (
    {{ stage('models') }}
),

in_use as (
    select model_id
    from {{ ref('model_promotions') }}
    qualify sequence = max(sequence) over (partition by arm)
)

select r.*, r.model_id in (select model_id from in_use) as promoted
from registry as r
