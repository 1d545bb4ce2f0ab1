-- Task-scoped tokens (`mat_` + 40 hex), minted when a task is claimed and
-- handed to the agent the daemon starts, so the agent never holds the
-- daemon's own credential. Only the SHA-256 of a token is stored. A token
-- works while its task is dispatched or running and before expires_at; the
-- trigger deletes it the moment its task ends, whichever path ends it
-- (a daemon, a user's cancel, the sweeper).
CREATE TABLE task_token (
    id           TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    token_hash   TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    task_id      TEXT NOT NULL REFERENCES agent_task_queue(id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    expires_at   TEXT NOT NULL,
    created_at   TEXT NOT NULL
) STRICT;
CREATE INDEX task_token_task_idx ON task_token(task_id);

CREATE TRIGGER task_token_ends_with_task
AFTER UPDATE OF status ON agent_task_queue
WHEN NEW.status IN ('completed', 'failed', 'cancelled')
BEGIN
    DELETE FROM task_token WHERE task_id = NEW.id;
END;
