-- Pings and update requests to a daemon ("probes"), kept in the database so
-- that every node sharing it sees them and they survive a restart: one
-- node queues a probe, the daemon's next heartbeat (on any node) takes it,
-- and its result (on any node) finishes it.
--
-- A probe the daemon never answers times out 60 s (ping) or 120 s (update)
-- after it was created. That is decided when it is read, so no status
-- 'timeout' is ever stored: the row stays 'pending' or 'running' until the
-- sweeper forgets it, an hour after it ended.
CREATE TABLE runtime_probe (
    id             TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    runtime_id     TEXT NOT NULL REFERENCES agent_runtime(id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('ping', 'update')),
    status         TEXT NOT NULL
                   CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    target_version TEXT,
    output         TEXT NOT NULL DEFAULT '',
    error          TEXT NOT NULL DEFAULT '',
    duration_ms    INTEGER CHECK (duration_ms >= 0),
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
) STRICT;
-- a runtime's probes of one kind, oldest first (the bounds, heartbeats)
CREATE INDEX runtime_probe_runtime_idx ON runtime_probe(runtime_id, kind, created_at);
-- what the sweeper forgets
CREATE INDEX runtime_probe_created_idx ON runtime_probe(created_at);
