-- An agent may exist without a runtime: unbinding a runtime's agents to
-- delete it keeps them, their settings and their history. runtime_id NULL
-- is not claimable by anyone until the agent is bound again.
--
-- SQLite drops a NOT NULL only by rebuilding the table. The migrations
-- run with foreign keys off (see `migrate`), so dropping the old table
-- neither cascades nor sets anything to NULL, and in legacy ALTER mode the
-- rename does not re-check the triggers that name `agent`; rowids are
-- kept, so lists that break ties by them keep their order.
PRAGMA legacy_alter_table = ON;

CREATE TABLE agent_unbound (
    id                   TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    workspace_id         TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    -- RESTRICT: a runtime with agents (even archived ones) cannot vanish
    -- underneath them; its delete unbinds or refuses first
    runtime_id           TEXT REFERENCES agent_runtime(id) ON DELETE RESTRICT,
    name                 TEXT NOT NULL CHECK (length(name) > 0),
    description          TEXT NOT NULL DEFAULT '',
    instructions         TEXT NOT NULL DEFAULT '',
    avatar_url           TEXT,
    runtime_mode         TEXT NOT NULL CHECK (runtime_mode IN ('local', 'cloud')),
    runtime_config       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(runtime_config)),
    visibility           TEXT NOT NULL DEFAULT 'private'
                         CHECK (visibility IN ('workspace', 'private')),
    status               TEXT NOT NULL DEFAULT 'idle'
                         CHECK (status IN ('idle', 'working', 'blocked', 'error', 'offline')),
    max_concurrent_tasks INTEGER NOT NULL DEFAULT 6
                         CHECK (max_concurrent_tasks BETWEEN 1 AND 100),
    owner_id             TEXT REFERENCES "user"(id) ON DELETE SET NULL,
    archived_at          TEXT,
    archived_by          TEXT REFERENCES "user"(id) ON DELETE SET NULL,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    max_attempts         INTEGER NOT NULL DEFAULT 2 CHECK (max_attempts BETWEEN 1 AND 10)
) STRICT;

INSERT INTO agent_unbound (rowid, id, workspace_id, runtime_id, name, description, instructions,
    avatar_url, runtime_mode, runtime_config, visibility, status, max_concurrent_tasks, owner_id,
    archived_at, archived_by, created_at, updated_at, max_attempts)
SELECT rowid, id, workspace_id, runtime_id, name, description, instructions,
    avatar_url, runtime_mode, runtime_config, visibility, status, max_concurrent_tasks, owner_id,
    archived_at, archived_by, created_at, updated_at, max_attempts
FROM agent;

DROP TABLE agent;
ALTER TABLE agent_unbound RENAME TO agent;

CREATE INDEX agent_workspace_idx ON agent(workspace_id, created_at);
CREATE INDEX agent_runtime_idx ON agent(runtime_id);
CREATE INDEX agent_workspace_page_idx ON agent(workspace_id, created_at, id);

PRAGMA legacy_alter_table = OFF;
