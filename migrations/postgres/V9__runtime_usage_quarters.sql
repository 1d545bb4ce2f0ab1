-- Task usage per (runtime, UTC quarter hour, agent, provider, model): the
-- rollup a runtime's usage pages read, fine enough that a local day or
-- hour in any IANA zone (offsets are whole quarter hours, and so are
-- their changes) is a whole number of buckets. Kept in the transaction of
-- every task usage write, bucketed by when the usage was first recorded.
-- agent_id is the nil UUID for a task without an agent. No foreign key on
-- the runtime or the agent: deleting them changes no past totals.
-- cost_usd_ticks sums the costs providers reported; the uncosted_* counts
-- are the tokens of usage rows without one (what an estimate must price).
CREATE TABLE runtime_usage_quarter (
    runtime_id               uuid NOT NULL,
    bucket                   timestamptz NOT NULL
        CHECK (date_bin('15 minutes', bucket, '2000-01-01 00:00:00+00') = bucket),
    agent_id                 uuid NOT NULL,
    provider                 text COLLATE "C" NOT NULL,
    model                    text COLLATE "C" NOT NULL,
    workspace_id             uuid NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
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
    PRIMARY KEY (runtime_id, bucket, agent_id, provider, model)
);
CREATE INDEX runtime_usage_quarter_workspace_idx ON runtime_usage_quarter(workspace_id);

-- The usage recorded so far; a task counts once per model, on its first
-- usage row of that model. Sums in numeric, clamped at 2^63-1.
INSERT INTO runtime_usage_quarter (runtime_id, bucket, agent_id, provider, model,
    workspace_id, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    cost_usd_ticks, uncosted_input_tokens, uncosted_output_tokens,
    uncosted_cache_read_tokens, uncosted_cache_write_tokens, task_count)
SELECT t.runtime_id,
       date_bin('15 minutes', u.created_at, '2000-01-01 00:00:00+00'),
       coalesce(t.agent_id, '00000000-0000-0000-0000-000000000000'),
       u.provider, u.model, t.workspace_id,
       LEAST(sum(u.input_tokens), 9223372036854775807)::bigint,
       LEAST(sum(u.output_tokens), 9223372036854775807)::bigint,
       LEAST(sum(u.cache_read_tokens), 9223372036854775807)::bigint,
       LEAST(sum(u.cache_write_tokens), 9223372036854775807)::bigint,
       LEAST(coalesce(sum(u.cost_usd_ticks), 0), 9223372036854775807)::bigint,
       LEAST(coalesce(sum(u.input_tokens) FILTER (WHERE u.cost_usd_ticks IS NULL), 0), 9223372036854775807)::bigint,
       LEAST(coalesce(sum(u.output_tokens) FILTER (WHERE u.cost_usd_ticks IS NULL), 0), 9223372036854775807)::bigint,
       LEAST(coalesce(sum(u.cache_read_tokens) FILTER (WHERE u.cost_usd_ticks IS NULL), 0), 9223372036854775807)::bigint,
       LEAST(coalesce(sum(u.cache_write_tokens) FILTER (WHERE u.cost_usd_ticks IS NULL), 0), 9223372036854775807)::bigint,
       count(*) FILTER (WHERE NOT EXISTS (
           SELECT 1 FROM task_usage e
           WHERE e.task_id = u.task_id AND e.model = u.model
             AND (e.created_at < u.created_at
                  OR (e.created_at = u.created_at AND e.provider < u.provider))))
FROM task_usage u JOIN agent_task_queue t ON t.id = u.task_id
WHERE t.runtime_id IS NOT NULL
GROUP BY 1, 2, 3, 4, 5, 6;
