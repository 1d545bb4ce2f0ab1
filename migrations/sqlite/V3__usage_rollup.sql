-- Usage rollups, maintained in the same transaction as every task_usage
-- write (db::usage::upsert_task_usage), so the workspace usage pages read
-- O(days x models) rows instead of every usage row ever recorded.
--
-- Keyed by workspace, not runtime or agent: deleting or collecting a
-- runtime never changes a workspace's totals for past days.
--
-- A task_usage row is bucketed by when it was first recorded (its
-- created_at). task_count counts each (task, model) once, in the bucket
-- where that task's usage of that model was first recorded.

CREATE TABLE usage_daily (
    workspace_id       TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    date               TEXT NOT NULL,            -- UTC, YYYY-MM-DD
    model              TEXT NOT NULL,
    input_tokens       INTEGER NOT NULL DEFAULT 0,
    output_tokens      INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    task_count         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, date, model)
) STRICT, WITHOUT ROWID;

CREATE TABLE usage_hourly (
    workspace_id       TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    hour               TEXT NOT NULL,            -- UTC, YYYY-MM-DDTHH
    model              TEXT NOT NULL,
    input_tokens       INTEGER NOT NULL DEFAULT 0,
    output_tokens      INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    task_count         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, hour, model)
) STRICT, WITHOUT ROWID;

-- finding a task's earlier usage of the same model
CREATE INDEX task_usage_task_model_idx ON task_usage(task_id, model);
