-- Task usage per local day of the workspace's own time zone, per provider
-- and model: the day pages in that zone read one row per day and model
-- instead of the five to seven blocks a local day is cut into when its
-- midnight is not UTC's (src/store/usage.rs, `ZONE_DAY`). Kept in the
-- transaction of every task usage write, bucketed by when the usage was
-- first recorded, like usage_block.
--
-- bucket is the UTC minute the local day starts at (`YYYY-MM-DDTHH:MM`).
-- workspace.day_zone names the zone the rows are days of: a new zone
-- rebuilds them from the blocks in the transaction that sets it, and a
-- server that finds day_zone and timezone apart (this migration leaves
-- every workspace at UTC) rebuilds them when it starts.
ALTER TABLE workspace ADD COLUMN day_zone TEXT NOT NULL DEFAULT 'UTC'
    CHECK (length(day_zone) BETWEEN 1 AND 64);

CREATE TABLE usage_zone_day (
    workspace_id             TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
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
    PRIMARY KEY (workspace_id, bucket, provider, model)
) STRICT, WITHOUT ROWID;

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
