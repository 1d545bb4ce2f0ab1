-- Budgets that act (see src/store/budgets.rs), and the zone a workspace's
-- days and months start in.
ALTER TABLE workspace ADD COLUMN timezone TEXT NOT NULL DEFAULT 'UTC'
    CHECK (length(timezone) BETWEEN 1 AND 64);

-- A spending limit of a workspace, one of its agents, or the tasks one of
-- its members queued, per local day or month. Amounts are ticks of 1e-10
-- USD, the unit of reported costs. `spent_ticks` is the spend of the
-- period that starts at `period_start`; a write in a later period starts
-- it again. `warned_for`/`exceeded_for` hold the period start each event
-- was published for (once per period); `blocked_until` is the end of the
-- period whose limit was reached: until then claims skip the tasks the
-- budget charges.
CREATE TABLE budget (
    id            TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    workspace_id  TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    scope         TEXT NOT NULL CHECK (scope IN ('workspace', 'agent', 'member')),
    -- the agent's id, or the member's user id; none for the workspace
    scope_id      TEXT CHECK ((scope = 'workspace') = (scope_id IS NULL)),
    period        TEXT NOT NULL CHECK (period IN ('daily', 'monthly')),
    limit_ticks   INTEGER NOT NULL CHECK (limit_ticks > 0),
    warn_percent  INTEGER NOT NULL CHECK (warn_percent BETWEEN 1 AND 100),
    period_start  TEXT NOT NULL,
    spent_ticks   INTEGER NOT NULL DEFAULT 0 CHECK (spent_ticks >= 0),
    warned_for    TEXT,
    exceeded_for  TEXT,
    blocked_until TEXT,
    created_by    TEXT REFERENCES "user"(id) ON DELETE SET NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX budget_scope_idx
    ON budget(workspace_id, scope, coalesce(scope_id, ''), period);
-- what a claim looks up: the workspace's budgets blocking now
CREATE INDEX budget_blocked_idx ON budget(workspace_id, blocked_until)
    WHERE blocked_until IS NOT NULL;

-- a member budget starts from the member's tasks of its period
CREATE INDEX agent_task_queue_created_by_idx ON agent_task_queue(created_by)
    WHERE created_by IS NOT NULL;
