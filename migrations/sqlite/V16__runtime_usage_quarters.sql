-- Task usage per (runtime, UTC quarter hour, agent, provider, model): the
-- rollup a runtime's usage pages read, fine enough that a local day or
-- hour in any IANA zone (offsets are whole quarter hours, and so are
-- their changes) is a whole number of buckets. Kept in the transaction of
-- every task usage write, bucketed by when the usage was first recorded.
-- bucket is `YYYY-MM-DDTHH:MM` (minutes 00, 15, 30 or 45); agent_id is the
-- nil UUID for a task without an agent. No foreign key on the runtime or
-- the agent: deleting them changes no past totals. cost_usd_ticks sums the
-- costs providers reported; the uncosted_* counts are the tokens of usage
-- rows without one (what an estimate must price).
CREATE TABLE runtime_usage_quarter (
    runtime_id               TEXT NOT NULL CHECK (length(runtime_id) = 36),
    bucket                   TEXT NOT NULL CHECK (length(bucket) = 16),
    agent_id                 TEXT NOT NULL CHECK (length(agent_id) = 36),
    provider                 TEXT NOT NULL,
    model                    TEXT NOT NULL,
    workspace_id             TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    input_tokens             INTEGER NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens            INTEGER NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cache_read_tokens        INTEGER NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    cache_write_tokens       INTEGER NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
    cost_usd_ticks           INTEGER NOT NULL DEFAULT 0 CHECK (cost_usd_ticks >= 0),
    uncosted_input_tokens       INTEGER NOT NULL DEFAULT 0 CHECK (uncosted_input_tokens >= 0),
    uncosted_output_tokens      INTEGER NOT NULL DEFAULT 0 CHECK (uncosted_output_tokens >= 0),
    uncosted_cache_read_tokens  INTEGER NOT NULL DEFAULT 0 CHECK (uncosted_cache_read_tokens >= 0),
    uncosted_cache_write_tokens INTEGER NOT NULL DEFAULT 0 CHECK (uncosted_cache_write_tokens >= 0),
    task_count               INTEGER NOT NULL DEFAULT 0 CHECK (task_count >= 0),
    PRIMARY KEY (runtime_id, bucket, agent_id, provider, model)
) STRICT, WITHOUT ROWID;
CREATE INDEX runtime_usage_quarter_workspace_idx ON runtime_usage_quarter(workspace_id);

-- The usage recorded so far. A task counts once per model: on its first
-- usage row of that model. total() rather than sum(): an integer sum past
-- 64 bits is an error, which would stop the server from starting.
INSERT INTO runtime_usage_quarter (runtime_id, bucket, agent_id, provider, model,
    workspace_id, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    cost_usd_ticks, uncosted_input_tokens, uncosted_output_tokens,
    uncosted_cache_read_tokens, uncosted_cache_write_tokens, task_count)
SELECT t.runtime_id,
       substr(u.created_at, 1, 14)
           || printf('%02d', (CAST(substr(u.created_at, 15, 2) AS INTEGER) / 15) * 15),
       coalesce(t.agent_id, '00000000-0000-0000-0000-000000000000'),
       u.provider, u.model, t.workspace_id,
       CAST(min(total(u.input_tokens), 9223372036854775807) AS INTEGER),
       CAST(min(total(u.output_tokens), 9223372036854775807) AS INTEGER),
       CAST(min(total(u.cache_read_tokens), 9223372036854775807) AS INTEGER),
       CAST(min(total(u.cache_write_tokens), 9223372036854775807) AS INTEGER),
       CAST(min(total(u.cost_usd_ticks), 9223372036854775807) AS INTEGER),
       CAST(min(total(CASE WHEN u.cost_usd_ticks IS NULL THEN u.input_tokens END), 9223372036854775807) AS INTEGER),
       CAST(min(total(CASE WHEN u.cost_usd_ticks IS NULL THEN u.output_tokens END), 9223372036854775807) AS INTEGER),
       CAST(min(total(CASE WHEN u.cost_usd_ticks IS NULL THEN u.cache_read_tokens END), 9223372036854775807) AS INTEGER),
       CAST(min(total(CASE WHEN u.cost_usd_ticks IS NULL THEN u.cache_write_tokens END), 9223372036854775807) AS INTEGER),
       sum(NOT EXISTS (SELECT 1 FROM task_usage e
                       WHERE e.task_id = u.task_id AND e.model = u.model
                         AND (e.created_at < u.created_at
                              OR (e.created_at = u.created_at AND e.provider < u.provider))))
FROM task_usage u JOIN agent_task_queue t ON t.id = u.task_id
WHERE t.runtime_id IS NOT NULL
GROUP BY 1, 2, 3, 4, 5, 6;
