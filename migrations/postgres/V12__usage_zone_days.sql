-- Task usage per local day of the workspace's own time zone, per provider
-- and model: the day pages in that zone read one row per day and model
-- instead of the five to seven blocks a local day is cut into when its
-- midnight is not UTC's (src/store/usage.rs, `ZONE_DAY`). Kept in the
-- transaction of every task usage write, bucketed by when the usage was
-- first recorded, like usage_block.
--
-- bucket is the instant the local day starts. workspace.day_zone names
-- the zone the rows are days of: a new zone rebuilds them from the blocks
-- in the transaction that sets it, and a server that finds day_zone and
-- timezone apart (this migration leaves every workspace at UTC) rebuilds
-- them when it starts.
ALTER TABLE workspace ADD COLUMN day_zone text COLLATE "C" NOT NULL DEFAULT 'UTC'
    CHECK (length(day_zone) BETWEEN 1 AND 64);

CREATE TABLE usage_zone_day (
    workspace_id             uuid NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    bucket                   timestamptz NOT NULL,
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
    PRIMARY KEY (workspace_id, bucket, provider, model)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd_ticks,
                 uncosted_input_tokens, uncosted_output_tokens, uncosted_cache_read_tokens,
                 uncosted_cache_write_tokens, task_count)
);

-- UTC days are the day blocks already kept
INSERT INTO usage_zone_day (workspace_id, bucket, provider, model,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    cost_usd_ticks, uncosted_input_tokens, uncosted_output_tokens,
    uncosted_cache_read_tokens, uncosted_cache_write_tokens, task_count)
SELECT workspace_id, bucket, provider, model,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    cost_usd_ticks, uncosted_input_tokens, uncosted_output_tokens,
    uncosted_cache_read_tokens, uncosted_cache_write_tokens, task_count
FROM usage_block WHERE span = 1440;

-- The pages read the block rollups by their key's index. Rows updated in
-- place by every usage write end up scattered over the heap, one heap
-- page per row or so; with the counts carried in the key's index
-- (INCLUDE, as usage_hourly's in V7) a page reads the index alone (an
-- index-only scan) where the visibility map says the heap page holds no
-- change since the last (auto)vacuum. ON CONFLICT still finds the key:
-- INCLUDE columns are not part of it.
ALTER TABLE usage_block
    DROP CONSTRAINT usage_block_pkey,
    ADD CONSTRAINT usage_block_pkey PRIMARY KEY (workspace_id, span, bucket, provider, model)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd_ticks,
                 uncosted_input_tokens, uncosted_output_tokens, uncosted_cache_read_tokens,
                 uncosted_cache_write_tokens, task_count);
ALTER TABLE usage_agent_block
    DROP CONSTRAINT usage_agent_block_pkey,
    ADD CONSTRAINT usage_agent_block_pkey
        PRIMARY KEY (workspace_id, span, bucket, runtime_id, agent_id, provider, model)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd_ticks,
                 uncosted_input_tokens, uncosted_output_tokens, uncosted_cache_read_tokens,
                 uncosted_cache_write_tokens, task_count);

-- Index-only scans skip the heap only on pages vacuumed since their last
-- change. A usage write changes a dozen rows of these tables, so the
-- default thresholds (a fifth of the table changed) would leave most of a
-- year-old team's recent pages unvacuumed for months; at 1 % autovacuum
-- visits them about daily at a 50-person team's pace, and vacuuming a
-- table whose older pages are all visible reads only the changed ones.
ALTER TABLE usage_block SET (autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01);
ALTER TABLE usage_agent_block SET (autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01);
ALTER TABLE usage_zone_day SET (autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01);
