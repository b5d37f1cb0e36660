-- Patients as the contract types them; one row per valid row of patients.csv.
{{ stage('patients') }}
