-- The effective settings of the study this store holds: one row per key path, with the steps
-- that read it (written when a run binds the store to its study; also in <store>/study.yaml).
{{ stage('study_settings') }}
