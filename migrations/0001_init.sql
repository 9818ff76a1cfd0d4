-- alignd schema, version 1: files, models, jobs and everything a job leaves
-- behind (events, metrics, samples, checkpoints), and API keys.
-- Applied in one transaction by daemon/store.c; PRAGMA user_version = 1 after.
-- Timestamps are unix seconds. A job's feed items (events, metrics rows,
-- samples, status changes) share one increasing per-job `seq` (jobs.last_seq).

CREATE TABLE files (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    filename       TEXT    NOT NULL,
    purpose        TEXT    NOT NULL,
    bytes          INTEGER NOT NULL,
    sha256         TEXT    NOT NULL,          -- blob at files/<sha256[0:2]>/<sha256>
    created_at     INTEGER NOT NULL,
    status         TEXT    NOT NULL,          -- processed | error
    status_details TEXT,
    validation     TEXT,                      -- the dataset report (JSON)
    job_id         INTEGER,                   -- result file of a job, else NULL
    deleted        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX files_sha256 ON files(sha256);
CREATE INDEX files_job ON files(job_id);

CREATE TABLE models (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL UNIQUE,
    path           TEXT    NOT NULL,
    kind           TEXT    NOT NULL,          -- base | fine_tuned | adapter
    base_model     TEXT,                      -- adapters: the base's name
    owned_by       TEXT    NOT NULL,          -- alignd | ftjob-<n>
    job_id         INTEGER,
    created_at     INTEGER NOT NULL,
    architecture   TEXT,
    parameters     INTEGER,
    has_score_head INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    method          TEXT    NOT NULL,
    model           TEXT    NOT NULL,         -- as given: a model name or ftjob-<n>[:<step>]
    ref_model       TEXT,
    training_file   TEXT,                     -- file-<n>
    validation_file TEXT,
    task            TEXT,                     -- {"name","rows","seed"} (JSON) or NULL
    request         TEXT    NOT NULL,         -- the job as submitted (JSON)
    spec            TEXT    NOT NULL,         -- the trainer's description, paths resolved (JSON)
    hyperparameters TEXT,                     -- resolved (JSON)
    status          TEXT    NOT NULL,
    priority        INTEGER NOT NULL DEFAULT 0,
    suffix          TEXT,
    metadata        TEXT,                     -- JSON object of strings or NULL
    from_checkpoint TEXT,
    seed            INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    error_code      TEXT,
    error_message   TEXT,
    error_param     TEXT,
    step            INTEGER NOT NULL DEFAULT 0,
    total_steps     INTEGER NOT NULL DEFAULT 0,
    epoch           REAL    NOT NULL DEFAULT 0,
    trained_tokens  REAL    NOT NULL DEFAULT 0,
    tokens_per_second REAL  NOT NULL DEFAULT 0,
    elapsed_s       REAL    NOT NULL DEFAULT 0,
    remaining_s     REAL,
    memory_bytes    INTEGER NOT NULL DEFAULT 0,
    output_dir      TEXT    NOT NULL DEFAULT '',
    resume_dir      TEXT,                     -- checkpoint the next run starts from
    fine_tuned_model TEXT,
    last_seq        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_queue ON jobs(status, priority DESC, id);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      INTEGER NOT NULL REFERENCES jobs(id),
    seq         INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    level       TEXT    NOT NULL,             -- info | warn | error
    type        TEXT    NOT NULL,             -- message | status | metrics | checkpoint
    message     TEXT    NOT NULL,
    data        TEXT,                         -- JSON or NULL
    status      TEXT                          -- type = status: the new status
);
CREATE INDEX events_job ON events(job_id, id);
CREATE INDEX events_seq ON events(job_id, seq);

CREATE TABLE metrics (
    job_id      INTEGER NOT NULL REFERENCES jobs(id),
    step        INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    epoch       REAL    NOT NULL,
    created_at  INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    value       REAL,                         -- NULL: not finite
    PRIMARY KEY (job_id, step, name)
) WITHOUT ROWID;
CREATE INDEX metrics_seq ON metrics(job_id, seq);

CREATE TABLE samples (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      INTEGER NOT NULL REFERENCES jobs(id),
    step        INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    prompt      TEXT    NOT NULL,
    completion  TEXT    NOT NULL,
    reward      REAL
);
CREATE INDEX samples_job ON samples(job_id, step);
CREATE INDEX samples_seq ON samples(job_id, seq);

CREATE TABLE checkpoints (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      INTEGER NOT NULL REFERENCES jobs(id),
    step        INTEGER NOT NULL,
    path        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    metrics     TEXT,                         -- JSON: the step's metrics when logged
    UNIQUE (job_id, step)
);

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    hash        BLOB    NOT NULL UNIQUE,      -- SHA-256 of the key; the key itself is never stored
    read_only   INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);
