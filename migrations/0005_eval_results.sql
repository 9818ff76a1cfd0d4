-- Version 5: benchmark results (lib/train/bench.h), one row per job, step,
-- task and model role ("model": the job's model, its fine-tune at step > 0;
-- "model_b": an evaluate job's second model); the result object as JSON.
CREATE TABLE eval_results (
    job_id      INTEGER NOT NULL REFERENCES jobs(id),
    step        INTEGER NOT NULL,
    task        TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    result      TEXT    NOT NULL,
    PRIMARY KEY (job_id, step, task, role)
) WITHOUT ROWID;
