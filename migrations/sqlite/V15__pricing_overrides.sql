-- Prices a workspace's owners/admins set for (provider, model) from a date
-- on, over the built-in table (see src/pricing.rs). Provider and model are
-- the canonical names usage is priced under; prices are micro-USD per
-- million tokens; effective_from is a `YYYY-MM-DD` date.
CREATE TABLE pricing_override (
    workspace_id     TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    provider         TEXT NOT NULL CHECK (length(provider) BETWEEN 1 AND 255),
    model            TEXT NOT NULL CHECK (length(model) BETWEEN 1 AND 255),
    effective_from   TEXT NOT NULL CHECK (length(effective_from) = 10),
    input_micro_usd       INTEGER NOT NULL CHECK (input_micro_usd >= 0),
    output_micro_usd      INTEGER NOT NULL CHECK (output_micro_usd >= 0),
    cache_read_micro_usd  INTEGER NOT NULL CHECK (cache_read_micro_usd >= 0),
    cache_write_micro_usd INTEGER NOT NULL CHECK (cache_write_micro_usd >= 0),
    created_by       TEXT REFERENCES "user"(id) ON DELETE SET NULL,
    updated_at       TEXT NOT NULL,
    PRIMARY KEY (workspace_id, provider, model, effective_from)
) STRICT;
