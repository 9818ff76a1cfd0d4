-- Version 4: models by name from the Hugging Face Hub, and what GET /v1/models
-- tells of each model.
--   status  ready | downloading | failed (a Hub model registered before its
--           download ended; POST /v1/models {"hf": ...})
--   error   JSON {"code", "message"} of a failed download, else NULL
--   source  JSON: {"type": "folder", "path"} | {"type": "hub", "repo",
--           "revision", "commit"} | {"type": "fine_tune", "job", "base_model"}
--   info    JSON: {"family", "dtype", "context_length", "chat_template"}
ALTER TABLE models ADD COLUMN status TEXT NOT NULL DEFAULT 'ready';
ALTER TABLE models ADD COLUMN error TEXT;
ALTER TABLE models ADD COLUMN source TEXT;
ALTER TABLE models ADD COLUMN info TEXT;
