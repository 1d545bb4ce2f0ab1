-- Outbound webhooks. A workspace's owners and admins register endpoints
-- (at most 20 per workspace), each with the event types it wants and the
-- secret its deliveries are signed with (kept to sign; shown once).
CREATE TABLE webhook (
    id           TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    workspace_id TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    url          TEXT NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    -- a JSON list of event types
    events       TEXT NOT NULL CHECK (json_valid(events)),
    secret       TEXT NOT NULL,
    created_by   TEXT REFERENCES "user"(id) ON DELETE SET NULL,
    created_at   TEXT NOT NULL
) STRICT;
CREATE INDEX webhook_workspace_idx ON webhook(workspace_id, created_at, id);

-- The outbox: an event is written by a trigger in the transaction of the
-- change that causes it, only when a webhook of the workspace wants its
-- type, and fanned out at once to one delivery per such webhook. seq
-- orders them; order_key names what their order matters for (a
-- runtime, an agent, a budget).
CREATE TABLE webhook_event (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    type         TEXT NOT NULL,
    order_key    TEXT NOT NULL,
    payload      TEXT NOT NULL CHECK (json_valid(payload)),
    created_at   TEXT NOT NULL
);
CREATE INDEX webhook_event_created_idx ON webhook_event(created_at);

CREATE TABLE webhook_delivery (
    webhook_id      TEXT NOT NULL REFERENCES webhook(id) ON DELETE CASCADE,
    event_seq       INTEGER NOT NULL REFERENCES webhook_event(seq) ON DELETE CASCADE,
    order_key       TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    -- a JSON list of {at, status_code, error}, at most one per attempt
    attempts        TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(attempts)),
    next_attempt_at TEXT NOT NULL,
    PRIMARY KEY (webhook_id, event_seq)
) STRICT, WITHOUT ROWID;
-- what is due, and what must go before it
CREATE INDEX webhook_delivery_due_idx ON webhook_delivery(next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_delivery_order_idx ON webhook_delivery(webhook_id, order_key, event_seq)
    WHERE status = 'pending';
CREATE INDEX webhook_delivery_event_idx ON webhook_delivery(event_seq);

-- the fan-out: one delivery per webhook of the workspace that wants it
CREATE TRIGGER webhook_event_fan_out AFTER INSERT ON webhook_event
BEGIN
    INSERT INTO webhook_delivery (webhook_id, event_seq, order_key, next_attempt_at)
    SELECT w.id, new.seq, new.order_key, new.created_at FROM webhook w
    WHERE w.workspace_id = new.workspace_id
      AND EXISTS (SELECT 1 FROM json_each(w.events) WHERE value = new.type);
END;

-- runtime:online / runtime:offline
CREATE TRIGGER webhook_runtime_status AFTER UPDATE OF status ON agent_runtime
WHEN new.status IS NOT old.status
 AND EXISTS (SELECT 1 FROM webhook w, json_each(w.events) e
             WHERE w.workspace_id = new.workspace_id AND e.value = 'runtime:' || new.status)
BEGIN
    INSERT INTO webhook_event (id, workspace_id, type, order_key, payload, created_at)
    VALUES (lower(hex(randomblob(16))), new.workspace_id, 'runtime:' || new.status, new.id,
            json_object('runtime_id', new.id, 'name', new.name, 'custom_name', new.custom_name,
                        'provider', new.provider, 'daemon_id', new.daemon_id,
                        'owner_id', new.owner_id, 'status', new.status,
                        'offline_reason', json(new.offline_reason)),
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;

CREATE TRIGGER webhook_runtime_new AFTER INSERT ON agent_runtime
WHEN EXISTS (SELECT 1 FROM webhook w, json_each(w.events) e
             WHERE w.workspace_id = new.workspace_id AND e.value = 'runtime:' || new.status)
BEGIN
    INSERT INTO webhook_event (id, workspace_id, type, order_key, payload, created_at)
    VALUES (lower(hex(randomblob(16))), new.workspace_id, 'runtime:' || new.status, new.id,
            json_object('runtime_id', new.id, 'name', new.name, 'custom_name', new.custom_name,
                        'provider', new.provider, 'daemon_id', new.daemon_id,
                        'owner_id', new.owner_id, 'status', new.status,
                        'offline_reason', json(new.offline_reason)),
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;

-- task:failed, and task:expired for the sweeper's timeouts
CREATE TRIGGER webhook_task_failed AFTER UPDATE OF status ON agent_task_queue
WHEN new.status = 'failed' AND old.status IS NOT 'failed'
 AND EXISTS (SELECT 1 FROM webhook w, json_each(w.events) e
             WHERE w.workspace_id = new.workspace_id
               AND e.value = CASE WHEN new.failure_reason IN
                                      ('queued_expired', 'dispatch_timeout', 'running_timeout')
                                 THEN 'task:expired' ELSE 'task:failed' END)
BEGIN
    INSERT INTO webhook_event (id, workspace_id, type, order_key, payload, created_at)
    VALUES (lower(hex(randomblob(16))), new.workspace_id,
            CASE WHEN new.failure_reason IN ('queued_expired', 'dispatch_timeout', 'running_timeout')
                 THEN 'task:expired' ELSE 'task:failed' END,
            coalesce(new.runtime_id, (SELECT a.runtime_id FROM agent a WHERE a.id = new.agent_id),
                     new.id),
            json_object('task_id', new.id, 'agent_id', new.agent_id, 'runtime_id', new.runtime_id,
                        'failure_reason', new.failure_reason, 'error', new.error,
                        'attempt', new.attempt),
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;

-- agent:status
CREATE TRIGGER webhook_agent_status AFTER UPDATE OF status ON agent
WHEN new.status IS NOT old.status
 AND EXISTS (SELECT 1 FROM webhook w, json_each(w.events) e
             WHERE w.workspace_id = new.workspace_id AND e.value = 'agent:status')
BEGIN
    INSERT INTO webhook_event (id, workspace_id, type, order_key, payload, created_at)
    VALUES (lower(hex(randomblob(16))), new.workspace_id, 'agent:status', new.id,
            json_object('agent_id', new.id, 'name', new.name, 'runtime_id', new.runtime_id,
                        'status', new.status, 'previous_status', old.status),
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;

-- budget:warning and budget:exceeded, once per period as their marks are set
CREATE TRIGGER webhook_budget_warning AFTER UPDATE OF warned_for ON budget
WHEN new.warned_for IS NOT NULL AND new.warned_for IS NOT old.warned_for
 AND EXISTS (SELECT 1 FROM webhook w, json_each(w.events) e
             WHERE w.workspace_id = new.workspace_id AND e.value = 'budget:warning')
BEGIN
    INSERT INTO webhook_event (id, workspace_id, type, order_key, payload, created_at)
    VALUES (lower(hex(randomblob(16))), new.workspace_id, 'budget:warning', new.id,
            json_object('budget_id', new.id, 'scope', new.scope, 'scope_id', new.scope_id,
                        'period', new.period, 'period_start', new.period_start,
                        'limit_ticks', new.limit_ticks, 'spent_ticks', new.spent_ticks,
                        'warn_percent', new.warn_percent),
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;

CREATE TRIGGER webhook_budget_exceeded AFTER UPDATE OF exceeded_for ON budget
WHEN new.exceeded_for IS NOT NULL AND new.exceeded_for IS NOT old.exceeded_for
 AND EXISTS (SELECT 1 FROM webhook w, json_each(w.events) e
             WHERE w.workspace_id = new.workspace_id AND e.value = 'budget:exceeded')
BEGIN
    INSERT INTO webhook_event (id, workspace_id, type, order_key, payload, created_at)
    VALUES (lower(hex(randomblob(16))), new.workspace_id, 'budget:exceeded', new.id,
            json_object('budget_id', new.id, 'scope', new.scope, 'scope_id', new.scope_id,
                        'period', new.period, 'period_start', new.period_start,
                        'limit_ticks', new.limit_ticks, 'spent_ticks', new.spent_ticks,
                        'warn_percent', new.warn_percent),
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;
