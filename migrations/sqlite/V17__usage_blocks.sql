-- Task usage in aligned time blocks of several sizes ("spans"), so that a
-- window or a local day in any IANA zone is a handful of blocks instead of
-- every quarter hour in it (src/store/usage.rs explains the spans and the
-- alignment). Kept in the transaction of every task usage write, bucketed
-- by when the usage was first recorded, like runtime_usage_quarter.
--
-- usage_block: per workspace, provider and model; spans of 30, 60, 120,
-- 240 and 480 minutes and one UTC day. It replaces usage_daily and
-- usage_hourly, which had neither the provider nor the costs (and a
-- runtime's pages now read runtime_usage_quarter in any zone, so
-- runtime_task_usage_daily goes too).
--
-- usage_agent_block: per workspace, runtime, agent, provider and model;
-- spans of 240 minutes, and of 1, 4, 16 and 64 days (aligned to
-- 1970-01-01), indexed by runtime too (a runtime folded into another
-- moves its blocks). The nil UUID stands for "no runtime" or "no agent".
-- No foreign keys on runtime or agent: deleting them changes no past
-- totals.
--
-- Quarter hours of both are read from runtime_usage_quarter (per runtime,
-- quarter hour, agent, provider and model, with its workspace), indexed
-- by (workspace, quarter hour) from now on; from now on it also keeps the
-- usage of tasks no runtime claimed, under the nil UUID.
--
-- bucket is the block's first UTC minute, `YYYY-MM-DDTHH:MM`; span is in
-- minutes. cost_usd_ticks sums the costs providers reported; the
-- uncosted_* counts are the tokens of usage rows without one.
CREATE TABLE usage_block (
    workspace_id             TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    span                     INTEGER NOT NULL CHECK (span IN (30, 60, 120, 240, 480, 1440)),
    bucket                   TEXT NOT NULL CHECK (length(bucket) = 16),
    provider                 TEXT NOT NULL,
    model                    TEXT NOT NULL,
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
    PRIMARY KEY (workspace_id, span, bucket, provider, model)
) STRICT, WITHOUT ROWID;

CREATE TABLE usage_agent_block (
    workspace_id             TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    span                     INTEGER NOT NULL
        CHECK (span IN (240, 1440, 5760, 23040, 92160)),
    bucket                   TEXT NOT NULL CHECK (length(bucket) = 16),
    runtime_id               TEXT NOT NULL CHECK (length(runtime_id) = 36),
    agent_id                 TEXT NOT NULL CHECK (length(agent_id) = 36),
    provider                 TEXT NOT NULL,
    model                    TEXT NOT NULL,
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
    PRIMARY KEY (workspace_id, span, bucket, runtime_id, agent_id, provider, model)
) STRICT, WITHOUT ROWID;

-- The usage recorded so far, each row with whether it is its task's first
-- of its model (a task counts once per model). total() rather than sum():
-- an integer sum past 64 bits is an error, which would stop the server
-- from starting.
CREATE TEMP TABLE usage_seed AS
SELECT t.workspace_id AS workspace_id, u.provider AS provider, u.model AS model,
       CAST(substr(u.created_at, 12, 2) AS INTEGER) * 60
           + CAST(substr(u.created_at, 15, 2) AS INTEGER) AS minute,
       CAST(julianday(substr(u.created_at, 1, 10)) - 2440587.5 AS INTEGER) AS day,
       u.input_tokens AS i, u.output_tokens AS o, u.cache_read_tokens AS r,
       u.cache_write_tokens AS w, u.cost_usd_ticks AS cost,
       NOT EXISTS (SELECT 1 FROM task_usage e
                   WHERE e.task_id = u.task_id AND e.model = u.model
                     AND (e.created_at < u.created_at
                          OR (e.created_at = u.created_at AND e.provider < u.provider))) AS first
FROM task_usage u JOIN agent_task_queue t ON t.id = u.task_id;

CREATE TEMP TABLE usage_span (span INTEGER NOT NULL, agent INTEGER NOT NULL);
INSERT INTO usage_span VALUES (30, 0), (60, 0), (120, 0), (240, 1), (480, 0),
    (1440, 1), (5760, 2), (23040, 2), (92160, 2);

-- the UTC minute a block of `span` holding (day, minute) starts at
CREATE TEMP VIEW usage_seed_block AS
SELECT s.span AS span, s.agent AS agent, u.*,
       CASE WHEN s.span < 1440
            THEN date(u.day * 86400, 'unixepoch') || 'T'
                 || printf('%02d:%02d', (u.minute / s.span * s.span) / 60,
                           (u.minute / s.span * s.span) % 60)
            ELSE date((u.day - u.day % (s.span / 1440)) * 86400, 'unixepoch') || 'T00:00'
       END AS bucket
FROM usage_seed u JOIN usage_span s;

INSERT INTO usage_block (workspace_id, span, bucket, provider, model,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    cost_usd_ticks, uncosted_input_tokens, uncosted_output_tokens,
    uncosted_cache_read_tokens, uncosted_cache_write_tokens, task_count)
SELECT workspace_id, span, bucket, provider, model,
       CAST(min(total(i), 9223372036854775807) AS INTEGER),
       CAST(min(total(o), 9223372036854775807) AS INTEGER),
       CAST(min(total(r), 9223372036854775807) AS INTEGER),
       CAST(min(total(w), 9223372036854775807) AS INTEGER),
       CAST(min(total(cost), 9223372036854775807) AS INTEGER),
       CAST(min(total(CASE WHEN cost IS NULL THEN i END), 9223372036854775807) AS INTEGER),
       CAST(min(total(CASE WHEN cost IS NULL THEN o END), 9223372036854775807) AS INTEGER),
       CAST(min(total(CASE WHEN cost IS NULL THEN r END), 9223372036854775807) AS INTEGER),
       CAST(min(total(CASE WHEN cost IS NULL THEN w END), 9223372036854775807) AS INTEGER),
       sum(first)
FROM usage_seed_block WHERE agent < 2
GROUP BY 1, 2, 3, 4, 5;

-- The agent blocks add up the quarter hours of runtime_usage_quarter, so
-- their keys are the quarter hours' (the usage of a runtime deleted since
-- keeps its id, as the quarter hours do).
INSERT INTO usage_agent_block (workspace_id, span, bucket, runtime_id, agent_id, provider,
    model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    cost_usd_ticks, uncosted_input_tokens, uncosted_output_tokens,
    uncosted_cache_read_tokens, uncosted_cache_write_tokens, task_count)
SELECT q.workspace_id, s.span,
       CASE WHEN s.span < 1440
            THEN date(q.day * 86400, 'unixepoch') || 'T'
                 || printf('%02d:%02d', (q.minute / s.span * s.span) / 60,
                           (q.minute / s.span * s.span) % 60)
            ELSE date((q.day - q.day % (s.span / 1440)) * 86400, 'unixepoch') || 'T00:00'
       END,
       q.runtime_id, q.agent_id, q.provider, q.model,
       CAST(min(total(q.input_tokens), 9223372036854775807) AS INTEGER),
       CAST(min(total(q.output_tokens), 9223372036854775807) AS INTEGER),
       CAST(min(total(q.cache_read_tokens), 9223372036854775807) AS INTEGER),
       CAST(min(total(q.cache_write_tokens), 9223372036854775807) AS INTEGER),
       CAST(min(total(q.cost_usd_ticks), 9223372036854775807) AS INTEGER),
       CAST(min(total(q.uncosted_input_tokens), 9223372036854775807) AS INTEGER),
       CAST(min(total(q.uncosted_output_tokens), 9223372036854775807) AS INTEGER),
       CAST(min(total(q.uncosted_cache_read_tokens), 9223372036854775807) AS INTEGER),
       CAST(min(total(q.uncosted_cache_write_tokens), 9223372036854775807) AS INTEGER),
       CAST(min(total(q.task_count), 9223372036854775807) AS INTEGER)
FROM (SELECT *,
             CAST(substr(bucket, 12, 2) AS INTEGER) * 60
                 + CAST(substr(bucket, 15, 2) AS INTEGER) AS minute,
             CAST(julianday(substr(bucket, 1, 10)) - 2440587.5 AS INTEGER) AS day
      FROM runtime_usage_quarter) AS q
JOIN usage_span s ON s.agent > 0
GROUP BY 1, 2, 3, 4, 5, 6, 7;

-- the index the workspace pages read quarter hours by (its prefix serves
-- the workspace's cascade)
DROP INDEX runtime_usage_quarter_workspace_idx;
CREATE INDEX runtime_usage_quarter_bucket_idx ON runtime_usage_quarter(workspace_id, bucket);
-- a runtime folded into another moves its blocks
CREATE INDEX usage_agent_block_runtime_idx ON usage_agent_block(runtime_id);

DROP VIEW usage_seed_block;
DROP TABLE usage_span;
DROP TABLE usage_seed;
DROP TABLE usage_daily;
DROP TABLE usage_hourly;
-- a runtime's pages read runtime_usage_quarter
DROP TABLE runtime_task_usage_daily;

-- How tasks ended, in the same blocks: per workspace (spans of
-- usage_block) for the failures by day, and per agent too (spans of
-- usage_agent_block) for run time by agent. Kept by the triggers below on
-- every write that ends a task, whichever code path makes it. Bucketed by
-- completed_at; failure_reason is '' but for failed tasks ('unclassified'
-- when they carry none); run_count and run_seconds count the tasks that
-- had started. The nil UUID stands for "no agent".
CREATE TABLE task_outcome_block (
    workspace_id   TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    span           INTEGER NOT NULL CHECK (span IN (15, 30, 60, 120, 240, 480, 1440)),
    bucket         TEXT NOT NULL CHECK (length(bucket) = 16),
    status         TEXT NOT NULL CHECK (status IN ('completed', 'failed', 'cancelled')),
    failure_reason TEXT NOT NULL,
    task_count     INTEGER NOT NULL DEFAULT 0 CHECK (task_count >= 0),
    run_count      INTEGER NOT NULL DEFAULT 0 CHECK (run_count >= 0),
    run_seconds    INTEGER NOT NULL DEFAULT 0 CHECK (run_seconds >= 0),
    PRIMARY KEY (workspace_id, span, bucket, status, failure_reason)
) STRICT, WITHOUT ROWID;

CREATE TABLE task_outcome_agent_block (
    workspace_id   TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    span           INTEGER NOT NULL
        CHECK (span IN (15, 60, 240, 1440, 5760, 23040, 92160)),
    bucket         TEXT NOT NULL CHECK (length(bucket) = 16),
    agent_id       TEXT NOT NULL CHECK (length(agent_id) = 36),
    status         TEXT NOT NULL CHECK (status IN ('completed', 'failed', 'cancelled')),
    failure_reason TEXT NOT NULL,
    task_count     INTEGER NOT NULL DEFAULT 0 CHECK (task_count >= 0),
    run_count      INTEGER NOT NULL DEFAULT 0 CHECK (run_count >= 0),
    run_seconds    INTEGER NOT NULL DEFAULT 0 CHECK (run_seconds >= 0),
    PRIMARY KEY (workspace_id, span, bucket, agent_id, status, failure_reason)
) STRICT, WITHOUT ROWID;

-- One row per block a task that ended falls in: its spans, keys and counts.
CREATE VIEW task_outcome_rows AS
SELECT t.workspace_id AS workspace_id, s.span AS span, s.agent AS agent,
       CASE WHEN s.span < 1440
            THEN substr(t.completed_at, 1, 11)
                 || printf('%02d:%02d',
                        ((CAST(substr(t.completed_at, 12, 2) AS INTEGER) * 60
                          + CAST(substr(t.completed_at, 15, 2) AS INTEGER)) / s.span * s.span) / 60,
                        ((CAST(substr(t.completed_at, 12, 2) AS INTEGER) * 60
                          + CAST(substr(t.completed_at, 15, 2) AS INTEGER)) / s.span * s.span) % 60)
            ELSE date((CAST(julianday(substr(t.completed_at, 1, 10)) - 2440587.5 AS INTEGER)
                       - CAST(julianday(substr(t.completed_at, 1, 10)) - 2440587.5 AS INTEGER)
                         % (s.span / 1440)) * 86400, 'unixepoch') || 'T00:00'
       END AS bucket,
       coalesce(t.agent_id, '00000000-0000-0000-0000-000000000000') AS agent_id,
       t.status AS status,
       CASE WHEN t.status = 'failed' THEN coalesce(nullif(t.failure_reason, ''), 'unclassified')
            ELSE '' END AS failure_reason,
       t.started_at IS NOT NULL AS ran,
       CASE WHEN t.started_at IS NULL THEN 0
            ELSE max(0, CAST(round((julianday(t.completed_at) - julianday(t.started_at)) * 86400)
                             AS INTEGER)) END AS seconds,
       t.id AS task_id
FROM agent_task_queue t
JOIN (SELECT 15 AS span, 1 AS agent UNION ALL SELECT 30, 0 UNION ALL SELECT 60, 1
      UNION ALL SELECT 120, 0 UNION ALL SELECT 240, 1 UNION ALL SELECT 480, 0
      UNION ALL SELECT 1440, 1 UNION ALL SELECT 5760, 2 UNION ALL SELECT 23040, 2
      UNION ALL SELECT 92160, 2) AS s
WHERE t.status IN ('completed', 'failed', 'cancelled') AND t.completed_at IS NOT NULL;

INSERT INTO task_outcome_block (workspace_id, span, bucket, status, failure_reason,
    task_count, run_count, run_seconds)
SELECT workspace_id, span, bucket, status, failure_reason, count(*), sum(ran),
       CAST(min(total(seconds), 9223372036854775807) AS INTEGER)
FROM task_outcome_rows WHERE agent < 2
GROUP BY 1, 2, 3, 4, 5;

INSERT INTO task_outcome_agent_block (workspace_id, span, bucket, agent_id, status,
    failure_reason, task_count, run_count, run_seconds)
SELECT workspace_id, span, bucket, agent_id, status, failure_reason, count(*), sum(ran),
       CAST(min(total(seconds), 9223372036854775807) AS INTEGER)
FROM task_outcome_rows WHERE agent > 0
GROUP BY 1, 2, 3, 4, 5, 6;

-- A task counts once: when it first reaches an end state (tasks never
-- leave one; a rerun is a task of its own).
CREATE TRIGGER task_outcome_ended AFTER UPDATE OF status ON agent_task_queue
WHEN new.status IN ('completed', 'failed', 'cancelled')
 AND old.status NOT IN ('completed', 'failed', 'cancelled')
 AND new.completed_at IS NOT NULL
BEGIN
    INSERT INTO task_outcome_block (workspace_id, span, bucket, status, failure_reason,
        task_count, run_count, run_seconds)
    SELECT workspace_id, span, bucket, status, failure_reason, 1, ran, seconds
    FROM task_outcome_rows WHERE task_id = new.id AND agent < 2
    ON CONFLICT (workspace_id, span, bucket, status, failure_reason) DO UPDATE SET
        task_count = min(task_count + 1, 9223372036854775807),
        run_count = min(run_count + excluded.run_count, 9223372036854775807),
        run_seconds = min(run_seconds + excluded.run_seconds, 9223372036854775807);
    INSERT INTO task_outcome_agent_block (workspace_id, span, bucket, agent_id, status,
        failure_reason, task_count, run_count, run_seconds)
    SELECT workspace_id, span, bucket, agent_id, status, failure_reason, 1, ran, seconds
    FROM task_outcome_rows WHERE task_id = new.id AND agent > 0
    ON CONFLICT (workspace_id, span, bucket, agent_id, status, failure_reason) DO UPDATE SET
        task_count = min(task_count + 1, 9223372036854775807),
        run_count = min(run_count + excluded.run_count, 9223372036854775807),
        run_seconds = min(run_seconds + excluded.run_seconds, 9223372036854775807);
END;

-- a task written as ended (a copy of another install, a seed)
CREATE TRIGGER task_outcome_inserted AFTER INSERT ON agent_task_queue
WHEN new.status IN ('completed', 'failed', 'cancelled') AND new.completed_at IS NOT NULL
BEGIN
    INSERT INTO task_outcome_block (workspace_id, span, bucket, status, failure_reason,
        task_count, run_count, run_seconds)
    SELECT workspace_id, span, bucket, status, failure_reason, 1, ran, seconds
    FROM task_outcome_rows WHERE task_id = new.id AND agent < 2
    ON CONFLICT (workspace_id, span, bucket, status, failure_reason) DO UPDATE SET
        task_count = min(task_count + 1, 9223372036854775807),
        run_count = min(run_count + excluded.run_count, 9223372036854775807),
        run_seconds = min(run_seconds + excluded.run_seconds, 9223372036854775807);
    INSERT INTO task_outcome_agent_block (workspace_id, span, bucket, agent_id, status,
        failure_reason, task_count, run_count, run_seconds)
    SELECT workspace_id, span, bucket, agent_id, status, failure_reason, 1, ran, seconds
    FROM task_outcome_rows WHERE task_id = new.id AND agent > 0
    ON CONFLICT (workspace_id, span, bucket, agent_id, status, failure_reason) DO UPDATE SET
        task_count = min(task_count + 1, 9223372036854775807),
        run_count = min(run_count + excluded.run_count, 9223372036854775807),
        run_seconds = min(run_seconds + excluded.run_seconds, 9223372036854775807);
END;
