-- Prices a workspace's owners/admins set for (provider, model) from a date
-- on, over the built-in table (see src/pricing.rs). Provider and model are
-- the canonical names usage is priced under; prices are micro-USD per
-- million tokens.
CREATE TABLE pricing_override (
    workspace_id     uuid NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    provider         text COLLATE "C" NOT NULL CHECK (length(provider) BETWEEN 1 AND 255),
    model            text COLLATE "C" NOT NULL CHECK (length(model) BETWEEN 1 AND 255),
    effective_from   date NOT NULL,
    input_micro_usd       bigint NOT NULL CHECK (input_micro_usd >= 0),
    output_micro_usd      bigint NOT NULL CHECK (output_micro_usd >= 0),
    cache_read_micro_usd  bigint NOT NULL CHECK (cache_read_micro_usd >= 0),
    cache_write_micro_usd bigint NOT NULL CHECK (cache_write_micro_usd >= 0),
    created_by       uuid REFERENCES "user"(id) ON DELETE SET NULL,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, provider, model, effective_from)
);
