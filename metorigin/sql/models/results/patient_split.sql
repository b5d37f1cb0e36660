-- Which patients trained, validated and tested the models (the same test patients for both arms).
select * from {{ source('lake', 'patient_split') }}
