-- One row per processed scan: where its label map is and what it measures.
{{ stage('segmentations') }}
