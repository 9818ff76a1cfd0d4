-- Version 2: every model a job reads (policy, reference, reward models, judge,
-- critic, model B), as "|name|name|", so that DELETE /v1/models/{id} is
-- refused while a live job uses the model in any role. Jobs from version 1
-- keep using model and ref_model for that check.
ALTER TABLE jobs ADD COLUMN models_used TEXT;
