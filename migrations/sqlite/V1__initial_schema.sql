-- The whole data model of agenthub (SPEC §3). Later capabilities add code and
-- indexes on top of these tables, not new shapes.
--
-- Conventions:
--   * ids are UUID v4 in their canonical lower-case hyphenated text form, so
--     `sqlite3 agenthub.db` shows them as the API does;
--   * timestamps are UTC text `YYYY-MM-DDTHH:MM:SS.fffZ` (fixed width, so
--     text order is time order and range predicates can use indexes);
--   * JSON columns hold a JSON text checked with json_valid().

CREATE TABLE "user" (
    id          TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    email       TEXT NOT NULL UNIQUE COLLATE NOCASE CHECK (length(email) > 0),
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;

CREATE TABLE workspace (
    id          TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    name        TEXT NOT NULL CHECK (length(name) > 0),
    slug        TEXT NOT NULL UNIQUE CHECK (length(slug) > 0),
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;

CREATE TABLE member (
    id           TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    workspace_id TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    user_id      TEXT NOT NULL REFERENCES "user"(id) ON DELETE CASCADE,
    role         TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at   TEXT NOT NULL,
    UNIQUE (workspace_id, user_id)
) STRICT;
CREATE INDEX member_user_idx ON member(user_id);

CREATE TABLE personal_access_token (
    id           TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    user_id      TEXT NOT NULL REFERENCES "user"(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    -- hex SHA-256 of the whole token; the token itself is never stored
    token_hash   TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    -- the first characters of the token (`mul_ab12`), to tell tokens apart
    token_prefix TEXT NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT,
    created_at   TEXT NOT NULL
) STRICT;
CREATE INDEX personal_access_token_user_idx ON personal_access_token(user_id);

CREATE TABLE daemon_token (
    id           TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    token_hash   TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    workspace_id TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    daemon_id    TEXT NOT NULL CHECK (length(daemon_id) > 0),
    -- the member who minted it; removing that member revokes the token
    created_by   TEXT REFERENCES "user"(id) ON DELETE SET NULL,
    expires_at   TEXT NOT NULL,
    revoked_at   TEXT,
    created_at   TEXT NOT NULL
) STRICT;
CREATE INDEX daemon_token_workspace_idx ON daemon_token(workspace_id);
CREATE INDEX daemon_token_created_by_idx ON daemon_token(created_by);

CREATE TABLE agent_runtime (
    id           TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    workspace_id TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    daemon_id    TEXT,
    name         TEXT NOT NULL,
    runtime_mode TEXT NOT NULL CHECK (runtime_mode IN ('local', 'cloud')),
    provider     TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('online', 'offline')),
    device_info  TEXT NOT NULL DEFAULT '',
    metadata     TEXT NOT NULL DEFAULT '{}'
                 CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    owner_id     TEXT REFERENCES "user"(id) ON DELETE SET NULL,
    last_seen_at TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (workspace_id, daemon_id, provider)
) STRICT;
CREATE INDEX agent_runtime_workspace_created_idx ON agent_runtime(workspace_id, created_at);
CREATE INDEX agent_runtime_owner_idx ON agent_runtime(owner_id);

CREATE TABLE agent (
    id                   TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    workspace_id         TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    -- RESTRICT: a runtime with agents (even archived ones) cannot vanish
    -- underneath them; deleting it is an explicit, checked operation.
    runtime_id           TEXT NOT NULL REFERENCES agent_runtime(id) ON DELETE RESTRICT,
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
    updated_at           TEXT NOT NULL
) STRICT;
CREATE INDEX agent_workspace_idx ON agent(workspace_id, created_at);
CREATE INDEX agent_runtime_idx ON agent(runtime_id);

CREATE TABLE agent_task_queue (
    id           TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    workspace_id TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    -- SET NULL: task history outlives the agents and runtimes that ran it.
    agent_id     TEXT REFERENCES agent(id) ON DELETE SET NULL,
    runtime_id   TEXT REFERENCES agent_runtime(id) ON DELETE SET NULL,
    status       TEXT NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'dispatched', 'running',
                                   'completed', 'failed', 'cancelled')),
    priority     INTEGER NOT NULL DEFAULT 0,
    prompt       TEXT NOT NULL DEFAULT '',
    issue_id     TEXT,
    dispatched_at TEXT,
    started_at   TEXT,
    completed_at TEXT,
    result       TEXT CHECK (result IS NULL OR json_valid(result)),
    error        TEXT,
    created_at   TEXT NOT NULL
) STRICT;
CREATE INDEX agent_task_queue_agent_status_idx
    ON agent_task_queue(agent_id, status, priority DESC, created_at);
CREATE INDEX agent_task_queue_runtime_status_idx ON agent_task_queue(runtime_id, status);
CREATE INDEX agent_task_queue_workspace_idx ON agent_task_queue(workspace_id, created_at);

CREATE TABLE task_usage (
    id                 TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    task_id            TEXT NOT NULL REFERENCES agent_task_queue(id) ON DELETE CASCADE,
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    input_tokens       INTEGER NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens      INTEGER NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    cache_write_tokens INTEGER NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    UNIQUE (task_id, provider, model)
) STRICT;

CREATE TABLE runtime_usage (
    id                 TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    runtime_id         TEXT NOT NULL REFERENCES agent_runtime(id) ON DELETE CASCADE,
    date               TEXT NOT NULL CHECK (date GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
    provider           TEXT NOT NULL CHECK (length(provider) > 0),
    model              TEXT NOT NULL,
    input_tokens       INTEGER NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens      INTEGER NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    cache_write_tokens INTEGER NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    UNIQUE (runtime_id, date, provider, model)
) STRICT;
