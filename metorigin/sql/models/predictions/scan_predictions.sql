-- Every included lesion of every included scan scored by the promoted models (frozen), one row per
-- lesion and model, with the model id, its settings hash and the scan's out-of-distribution notes.
with staged as (
    {{ stage('scan_predictions') }}
)

select p.*
from staged as p
semi join {{ ref('scans') }} as s on s.scan_id = p.scan_id and s.included
