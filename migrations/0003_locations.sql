-- Version 3: where the folders whose paths the database records were when it
-- last ran (key: state_dir, jobs_dir, models_dir; value: the absolute path).
-- When the daemon starts with one of them somewhere else (a backup restored
-- to another path, a new models disk), the paths recorded under the old one
-- are rewritten to the new in one transaction (daemon/store.c store_relocate).
CREATE TABLE locations (
    key   TEXT PRIMARY KEY,
    path  TEXT NOT NULL
) WITHOUT ROWID;
