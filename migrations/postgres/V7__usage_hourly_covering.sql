-- A workspace usage page in a time zone other than UTC reads a month of
-- the hourly rollup (hours × models rows, added up by local date). Those
-- rows are updated in place by every usage write and end up a few per heap
-- page; with the counts carried in the key's index they are read from the
-- index alone (an index-only scan) instead of one heap page per few rows.
-- ON CONFLICT still finds the key: INCLUDE columns are not part of it.
ALTER TABLE usage_hourly
    DROP CONSTRAINT usage_hourly_pkey,
    ADD CONSTRAINT usage_hourly_pkey PRIMARY KEY (workspace_id, hour, model)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, task_count);
