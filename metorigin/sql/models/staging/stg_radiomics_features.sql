-- Long feature table: one row per included lesion and pyradiomics feature.
{{ stage('radiomics_features') }}
