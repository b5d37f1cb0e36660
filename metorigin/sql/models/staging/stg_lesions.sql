-- One row per connected component of a scan's lesion mask, included or not.
{{ stage('lesions') }}
