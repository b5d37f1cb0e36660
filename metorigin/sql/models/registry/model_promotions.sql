-- Every promotion in order (`sequence`; who, when, why); the last of each arm is the model in use
-- (models.promoted). The log itself is <store>/promotions.jsonl, appended to, never rewritten.
{{ stage('model_promotions') }}
