-- What the current Multica daemon reports about a task besides its
-- transitions, its usage priced by the provider, usage per runtime kept
-- from task usage, and in-place token renewal.

-- The agent's session and work directory, pinned while the task runs so a
-- crashed daemon does not lose them.
ALTER TABLE agent_task_queue ADD COLUMN session_id TEXT;
ALTER TABLE agent_task_queue ADD COLUMN work_dir TEXT;
-- While dispatched, the daemon may hold a lease past the dispatch timeout
-- (it is still preparing the task); the sweeper leaves a live lease alone.
ALTER TABLE agent_task_queue ADD COLUMN prepare_lease_expires_at TEXT;
-- What the daemon reported on acknowledging a cancellation: where the
-- cancelled work went, and when it acknowledged.
ALTER TABLE agent_task_queue ADD COLUMN branch_name TEXT;
ALTER TABLE agent_task_queue ADD COLUMN durable_work_dir TEXT;
ALTER TABLE agent_task_queue ADD COLUMN failure_reason TEXT;
ALTER TABLE agent_task_queue ADD COLUMN cancel_acked_at TEXT;

-- the tasks that carry an issue, for the daemon's work-dir collection
CREATE INDEX agent_task_queue_issue_idx ON agent_task_queue(issue_id, workspace_id);

-- The provider's own price of the usage, in 1e-10 USD; NULL when the
-- daemon reported none (0 means "unknown" on the wire, so it is NULL too).
ALTER TABLE task_usage ADD COLUMN cost_usd_ticks INTEGER
    CHECK (cost_usd_ticks IS NULL OR cost_usd_ticks > 0);

-- Task usage per runtime and UTC day, maintained in the same transaction
-- as every task_usage write (db::usage::upsert_task_usage), bucketed like
-- the workspace rollups by when a task's usage was first recorded. A
-- runtime's usage page reads O(days x models) rows from it. Deleting the
-- runtime deletes its rows; the workspace rollups keep the totals.
CREATE TABLE runtime_task_usage_daily (
    runtime_id         TEXT NOT NULL REFERENCES agent_runtime(id) ON DELETE CASCADE,
    date               TEXT NOT NULL,            -- UTC, YYYY-MM-DD
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    input_tokens       INTEGER NOT NULL DEFAULT 0,
    output_tokens      INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    -- NULL while no task of this key reported a cost
    cost_usd_ticks     INTEGER,
    PRIMARY KEY (runtime_id, date, provider, model)
) STRICT, WITHOUT ROWID;

-- total() rather than sum(): an integer sum past 64 bits is an error,
-- which would stop the server from starting; the cast saturates instead.
INSERT INTO runtime_task_usage_daily (runtime_id, date, provider, model, input_tokens,
    output_tokens, cache_read_tokens, cache_write_tokens)
SELECT t.runtime_id, substr(u.created_at, 1, 10), u.provider, u.model,
       CAST(min(total(u.input_tokens), 9223372036854775807) AS INTEGER),
       CAST(min(total(u.output_tokens), 9223372036854775807) AS INTEGER),
       CAST(min(total(u.cache_read_tokens), 9223372036854775807) AS INTEGER),
       CAST(min(total(u.cache_write_tokens), 9223372036854775807) AS INTEGER)
FROM task_usage u JOIN agent_task_queue t ON t.id = u.task_id
WHERE t.runtime_id IS NOT NULL
GROUP BY t.runtime_id, substr(u.created_at, 1, 10), u.provider, u.model;

-- Renewal extends a token in place by its own lifetime: expires_at minus
-- when it was made or last renewed.
ALTER TABLE personal_access_token ADD COLUMN renewed_at TEXT;
ALTER TABLE daemon_token ADD COLUMN renewed_at TEXT;
