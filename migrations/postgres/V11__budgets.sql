-- Budgets that act (see src/store/budgets.rs), and the zone a workspace's
-- days and months start in.
ALTER TABLE workspace ADD COLUMN timezone text COLLATE "C" NOT NULL DEFAULT 'UTC'
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
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    scope         text COLLATE "C" NOT NULL CHECK (scope IN ('workspace', 'agent', 'member')),
    -- the agent's id, or the member's user id; none for the workspace
    scope_id      uuid CHECK ((scope = 'workspace') = (scope_id IS NULL)),
    period        text COLLATE "C" NOT NULL CHECK (period IN ('daily', 'monthly')),
    limit_ticks   bigint NOT NULL CHECK (limit_ticks > 0),
    warn_percent  bigint NOT NULL CHECK (warn_percent BETWEEN 1 AND 100),
    period_start  timestamptz NOT NULL,
    spent_ticks   bigint NOT NULL DEFAULT 0 CHECK (spent_ticks >= 0),
    warned_for    timestamptz,
    exceeded_for  timestamptz,
    blocked_until timestamptz,
    created_by    uuid REFERENCES "user"(id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE UNIQUE INDEX budget_scope_idx
    ON budget(workspace_id, scope, coalesce(scope_id, '00000000-0000-0000-0000-000000000000'), period);
-- what a claim looks up: the workspace's budgets blocking now
CREATE INDEX budget_blocked_idx ON budget(workspace_id, blocked_until)
    WHERE blocked_until IS NOT NULL;

-- a member budget starts from the member's tasks of its period
CREATE INDEX agent_task_queue_created_by_idx ON agent_task_queue(created_by)
    WHERE created_by IS NOT NULL;
