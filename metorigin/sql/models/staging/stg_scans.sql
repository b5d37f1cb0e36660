-- Every listed scan, valid or not, with its geometry, acquisition and inclusion decision.
{{ stage('scans') }}
