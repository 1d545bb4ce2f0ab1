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
-- bucket is the block's first instant; span is in minutes.
-- cost_usd_ticks sums the costs providers reported; the uncosted_* counts
-- are the tokens of usage rows without one.
CREATE TABLE usage_block (
    workspace_id             uuid NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    span                     bigint NOT NULL CHECK (span IN (30, 60, 120, 240, 480, 1440)),
    bucket                   timestamptz NOT NULL
        CHECK (date_bin('15 minutes', bucket, '2000-01-01 00:00:00+00') = bucket),
    provider                 text COLLATE "C" NOT NULL,
    model                    text COLLATE "C" NOT NULL,
    input_tokens             bigint NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens            bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cache_read_tokens        bigint NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    cache_write_tokens       bigint NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
    cost_usd_ticks           bigint NOT NULL DEFAULT 0 CHECK (cost_usd_ticks >= 0),
    uncosted_input_tokens       bigint NOT NULL DEFAULT 0 CHECK (uncosted_input_tokens >= 0),
    uncosted_output_tokens      bigint NOT NULL DEFAULT 0 CHECK (uncosted_output_tokens >= 0),
    uncosted_cache_read_tokens  bigint NOT NULL DEFAULT 0 CHECK (uncosted_cache_read_tokens >= 0),
    uncosted_cache_write_tokens bigint NOT NULL DEFAULT 0 CHECK (uncosted_cache_write_tokens >= 0),
    task_count               bigint NOT NULL DEFAULT 0 CHECK (task_count >= 0),
    PRIMARY KEY (workspace_id, span, bucket, provider, model)
);

CREATE TABLE usage_agent_block (
    workspace_id             uuid NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    span                     bigint NOT NULL
        CHECK (span IN (240, 1440, 5760, 23040, 92160)),
    bucket                   timestamptz NOT NULL
        CHECK (date_bin('15 minutes', bucket, '2000-01-01 00:00:00+00') = bucket),
    runtime_id               uuid NOT NULL,
    agent_id                 uuid NOT NULL,
    provider                 text COLLATE "C" NOT NULL,
    model                    text COLLATE "C" NOT NULL,
    input_tokens             bigint NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens            bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cache_read_tokens        bigint NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    cache_write_tokens       bigint NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
    cost_usd_ticks           bigint NOT NULL DEFAULT 0 CHECK (cost_usd_ticks >= 0),
    uncosted_input_tokens       bigint NOT NULL DEFAULT 0 CHECK (uncosted_input_tokens >= 0),
    uncosted_output_tokens      bigint NOT NULL DEFAULT 0 CHECK (uncosted_output_tokens >= 0),
    uncosted_cache_read_tokens  bigint NOT NULL DEFAULT 0 CHECK (uncosted_cache_read_tokens >= 0),
    uncosted_cache_write_tokens bigint NOT NULL DEFAULT 0 CHECK (uncosted_cache_write_tokens >= 0),
    task_count               bigint NOT NULL DEFAULT 0 CHECK (task_count >= 0),
    PRIMARY KEY (workspace_id, span, bucket, runtime_id, agent_id, provider, model)
);

-- The usage recorded so far, each row with whether it is its task's first
-- of its model (a task counts once per model). Sums in numeric, clamped at
-- 2^63-1.
-- The start of the block of `span` minutes that `t` falls in.
CREATE FUNCTION usage_block_start(span integer, t timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN span < 1440
                THEN date_bin(make_interval(mins => span), t, '2000-01-01 00:00:00+00')
                ELSE date_bin(make_interval(days => span / 1440), t, '1970-01-01 00:00:00+00')
           END
$$;

CREATE TEMP TABLE usage_seed AS
SELECT t.workspace_id, u.provider, u.model, u.created_at AS at,
       u.input_tokens AS i, u.output_tokens AS o, u.cache_read_tokens AS r,
       u.cache_write_tokens AS w, u.cost_usd_ticks AS cost,
       NOT EXISTS (SELECT 1 FROM task_usage e
                   WHERE e.task_id = u.task_id AND e.model = u.model
                     AND (e.created_at < u.created_at
                          OR (e.created_at = u.created_at AND e.provider < u.provider))) AS first
FROM task_usage u JOIN agent_task_queue t ON t.id = u.task_id;

CREATE TEMP VIEW usage_seed_block AS
SELECT s.span, s.agent, u.*,
       usage_block_start(s.span, u.at) AS bucket
FROM usage_seed u
CROSS JOIN (VALUES (30, 0), (60, 0), (120, 0), (240, 1), (480, 0),
                   (1440, 1), (5760, 2), (23040, 2), (92160, 2)) AS s(span, agent);

INSERT INTO usage_block (workspace_id, span, bucket, provider, model,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    cost_usd_ticks, uncosted_input_tokens, uncosted_output_tokens,
    uncosted_cache_read_tokens, uncosted_cache_write_tokens, task_count)
SELECT workspace_id, span, bucket, provider, model,
       LEAST(sum(i), 9223372036854775807)::bigint,
       LEAST(sum(o), 9223372036854775807)::bigint,
       LEAST(sum(r), 9223372036854775807)::bigint,
       LEAST(sum(w), 9223372036854775807)::bigint,
       LEAST(coalesce(sum(cost), 0), 9223372036854775807)::bigint,
       LEAST(coalesce(sum(i) FILTER (WHERE cost IS NULL), 0), 9223372036854775807)::bigint,
       LEAST(coalesce(sum(o) FILTER (WHERE cost IS NULL), 0), 9223372036854775807)::bigint,
       LEAST(coalesce(sum(r) FILTER (WHERE cost IS NULL), 0), 9223372036854775807)::bigint,
       LEAST(coalesce(sum(w) FILTER (WHERE cost IS NULL), 0), 9223372036854775807)::bigint,
       count(*) FILTER (WHERE first)
FROM usage_seed_block WHERE agent < 2
GROUP BY 1, 2, 3, 4, 5;

-- The agent blocks add up the quarter hours of runtime_usage_quarter, so
-- their keys are the quarter hours' (the usage of a runtime deleted since
-- keeps its id, as the quarter hours do).
INSERT INTO usage_agent_block (workspace_id, span, bucket, runtime_id, agent_id, provider,
    model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    cost_usd_ticks, uncosted_input_tokens, uncosted_output_tokens,
    uncosted_cache_read_tokens, uncosted_cache_write_tokens, task_count)
SELECT q.workspace_id, s.span, usage_block_start(s.span, q.bucket),
       q.runtime_id, q.agent_id, q.provider, q.model,
       LEAST(sum(q.input_tokens), 9223372036854775807)::bigint,
       LEAST(sum(q.output_tokens), 9223372036854775807)::bigint,
       LEAST(sum(q.cache_read_tokens), 9223372036854775807)::bigint,
       LEAST(sum(q.cache_write_tokens), 9223372036854775807)::bigint,
       LEAST(sum(q.cost_usd_ticks), 9223372036854775807)::bigint,
       LEAST(sum(q.uncosted_input_tokens), 9223372036854775807)::bigint,
       LEAST(sum(q.uncosted_output_tokens), 9223372036854775807)::bigint,
       LEAST(sum(q.uncosted_cache_read_tokens), 9223372036854775807)::bigint,
       LEAST(sum(q.uncosted_cache_write_tokens), 9223372036854775807)::bigint,
       LEAST(sum(q.task_count), 9223372036854775807)::bigint
FROM runtime_usage_quarter q
CROSS JOIN (VALUES (240), (1440), (5760), (23040), (92160)) AS s(span)
GROUP BY 1, 2, 3, 4, 5, 6, 7;

-- the index the workspace pages read quarter hours by (its prefix serves
-- the workspace's cascade)
DROP INDEX runtime_usage_quarter_workspace_idx;
CREATE INDEX runtime_usage_quarter_bucket_idx ON runtime_usage_quarter(workspace_id, bucket);
-- a runtime folded into another moves its blocks
CREATE INDEX usage_agent_block_runtime_idx ON usage_agent_block(runtime_id);

DROP VIEW usage_seed_block;
DROP TABLE usage_seed;
DROP TABLE usage_daily;
DROP TABLE usage_hourly;
-- a runtime's pages read runtime_usage_quarter
DROP TABLE runtime_task_usage_daily;

-- How tasks ended, in the same blocks: per workspace (spans of
-- usage_block) for the failures by day, and per agent too (spans of
-- usage_agent_block) for run time by agent. Kept by the trigger below on
-- every write that ends a task, whichever code path makes it. Bucketed by
-- completed_at; failure_reason is '' but for failed tasks ('unclassified'
-- when they carry none); run_count and run_seconds count the tasks that
-- had started. The nil UUID stands for "no agent".
CREATE TABLE task_outcome_block (
    workspace_id   uuid NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    span           bigint NOT NULL CHECK (span IN (15, 30, 60, 120, 240, 480, 1440)),
    bucket         timestamptz NOT NULL
        CHECK (date_bin('15 minutes', bucket, '2000-01-01 00:00:00+00') = bucket),
    status         text COLLATE "C" NOT NULL CHECK (status IN ('completed', 'failed', 'cancelled')),
    failure_reason text COLLATE "C" NOT NULL,
    task_count     bigint NOT NULL DEFAULT 0 CHECK (task_count >= 0),
    run_count      bigint NOT NULL DEFAULT 0 CHECK (run_count >= 0),
    run_seconds    bigint NOT NULL DEFAULT 0 CHECK (run_seconds >= 0),
    PRIMARY KEY (workspace_id, span, bucket, status, failure_reason)
);

CREATE TABLE task_outcome_agent_block (
    workspace_id   uuid NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    span           bigint NOT NULL
        CHECK (span IN (15, 60, 240, 1440, 5760, 23040, 92160)),
    bucket         timestamptz NOT NULL
        CHECK (date_bin('15 minutes', bucket, '2000-01-01 00:00:00+00') = bucket),
    agent_id       uuid NOT NULL,
    status         text COLLATE "C" NOT NULL CHECK (status IN ('completed', 'failed', 'cancelled')),
    failure_reason text COLLATE "C" NOT NULL,
    task_count     bigint NOT NULL DEFAULT 0 CHECK (task_count >= 0),
    run_count      bigint NOT NULL DEFAULT 0 CHECK (run_count >= 0),
    run_seconds    bigint NOT NULL DEFAULT 0 CHECK (run_seconds >= 0),
    PRIMARY KEY (workspace_id, span, bucket, agent_id, status, failure_reason)
);


-- One row per block a task that ended falls in: its spans, keys and counts.
CREATE VIEW task_outcome_rows AS
SELECT t.id AS task_id, t.workspace_id, s.span, s.agent,
       usage_block_start(s.span, t.completed_at) AS bucket,
       coalesce(t.agent_id, '00000000-0000-0000-0000-000000000000') AS agent_id,
       t.status,
       CASE WHEN t.status = 'failed' THEN coalesce(nullif(t.failure_reason, ''), 'unclassified')
            ELSE '' END AS failure_reason,
       (t.started_at IS NOT NULL)::int AS ran,
       CASE WHEN t.started_at IS NULL THEN 0
            ELSE GREATEST(0, round(EXTRACT(EPOCH FROM t.completed_at - t.started_at)))::bigint
       END AS seconds
FROM agent_task_queue t
CROSS JOIN (VALUES (15, 1), (30, 0), (60, 1), (120, 0), (240, 1), (480, 0),
                   (1440, 1), (5760, 2), (23040, 2), (92160, 2)) AS s(span, agent)
WHERE t.status IN ('completed', 'failed', 'cancelled') AND t.completed_at IS NOT NULL;

INSERT INTO task_outcome_block (workspace_id, span, bucket, status, failure_reason,
    task_count, run_count, run_seconds)
SELECT workspace_id, span, bucket, status, failure_reason, count(*), sum(ran),
       LEAST(sum(seconds), 9223372036854775807)::bigint
FROM task_outcome_rows WHERE agent < 2
GROUP BY 1, 2, 3, 4, 5;

INSERT INTO task_outcome_agent_block (workspace_id, span, bucket, agent_id, status,
    failure_reason, task_count, run_count, run_seconds)
SELECT workspace_id, span, bucket, agent_id, status, failure_reason, count(*), sum(ran),
       LEAST(sum(seconds), 9223372036854775807)::bigint
FROM task_outcome_rows WHERE agent > 0
GROUP BY 1, 2, 3, 4, 5, 6;

-- A task counts once: when it first reaches an end state, or is written
-- in one (tasks never leave one; a rerun is a task of its own).
CREATE FUNCTION task_outcome_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status IN ('completed', 'failed', 'cancelled') THEN
        RETURN NULL;
    END IF;
    INSERT INTO task_outcome_block AS b (workspace_id, span, bucket, status, failure_reason,
        task_count, run_count, run_seconds)
    SELECT workspace_id, span, bucket, status, failure_reason, 1, ran, seconds
    FROM task_outcome_rows WHERE task_id = NEW.id AND agent < 2
    ON CONFLICT (workspace_id, span, bucket, status, failure_reason) DO UPDATE SET
        task_count = LEAST(b.task_count::numeric + 1, 9223372036854775807)::bigint,
        run_count = LEAST(b.run_count::numeric + excluded.run_count, 9223372036854775807)::bigint,
        run_seconds = LEAST(b.run_seconds::numeric + excluded.run_seconds, 9223372036854775807)::bigint;
    INSERT INTO task_outcome_agent_block AS b (workspace_id, span, bucket, agent_id, status,
        failure_reason, task_count, run_count, run_seconds)
    SELECT workspace_id, span, bucket, agent_id, status, failure_reason, 1, ran, seconds
    FROM task_outcome_rows WHERE task_id = NEW.id AND agent > 0
    ON CONFLICT (workspace_id, span, bucket, agent_id, status, failure_reason) DO UPDATE SET
        task_count = LEAST(b.task_count::numeric + 1, 9223372036854775807)::bigint,
        run_count = LEAST(b.run_count::numeric + excluded.run_count, 9223372036854775807)::bigint,
        run_seconds = LEAST(b.run_seconds::numeric + excluded.run_seconds, 9223372036854775807)::bigint;
    RETURN NULL;
END $$;
CREATE TRIGGER task_outcome_ended
    AFTER INSERT OR UPDATE OF status ON agent_task_queue
    FOR EACH ROW
    WHEN (NEW.status IN ('completed', 'failed', 'cancelled') AND NEW.completed_at IS NOT NULL)
    EXECUTE FUNCTION task_outcome_ended();
