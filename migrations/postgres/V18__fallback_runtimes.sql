-- Fallback runtimes: an agent names up to five runtimes (in order) that
-- may take its queued tasks while its own runtime cannot: offline for
-- longer than fallback_after_secs, or within fallback_after_secs of a task
-- of it failing there for a provider's quota or rate limit
-- (quota_failed_at). The claim re-checks on every claim that the agent's
-- owner may still bind each fallback runtime.
ALTER TABLE agent ADD COLUMN fallback_after_secs bigint NOT NULL DEFAULT 300
    CHECK (fallback_after_secs BETWEEN 30 AND 86400);
ALTER TABLE agent ADD COLUMN quota_failed_at timestamptz;

CREATE TABLE agent_fallback (
    agent_id   uuid NOT NULL REFERENCES agent(id) ON DELETE CASCADE,
    runtime_id uuid NOT NULL REFERENCES agent_runtime(id) ON DELETE CASCADE,
    position   bigint NOT NULL CHECK (position BETWEEN 0 AND 4),
    PRIMARY KEY (agent_id, runtime_id)
);

-- a claim starts from the runtimes it claims for
CREATE INDEX agent_fallback_runtime_idx ON agent_fallback(runtime_id, agent_id);
