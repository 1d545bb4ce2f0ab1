-- Outbound webhooks. A workspace's owners and admins register endpoints
-- (at most 20 per workspace), each with the event types it wants and the
-- secret its deliveries are signed with (kept to sign; shown once).
CREATE TABLE webhook (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    url          text COLLATE "C" NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    -- a JSON list of the event types it wants
    events       jsonb NOT NULL,
    secret       text COLLATE "C" NOT NULL,
    created_by   uuid REFERENCES "user"(id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX webhook_workspace_idx ON webhook(workspace_id, created_at, id);

-- The outbox: an event is written by a trigger in the transaction of the
-- change that causes it, only when a webhook of the workspace wants its
-- type, and fanned out at once to one delivery per such webhook. seq
-- orders them; order_key names what their order matters for (a runtime,
-- an agent, a budget), whose row the change holds locked, so events of
-- one key get their seq in the order they commit.
CREATE TABLE webhook_event (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           uuid NOT NULL UNIQUE,
    workspace_id uuid NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    type         text COLLATE "C" NOT NULL,
    order_key    uuid NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX webhook_event_created_idx ON webhook_event(created_at);

CREATE TABLE webhook_delivery (
    webhook_id      uuid NOT NULL REFERENCES webhook(id) ON DELETE CASCADE,
    event_seq       bigint NOT NULL REFERENCES webhook_event(seq) ON DELETE CASCADE,
    order_key       uuid NOT NULL,
    status          text COLLATE "C" NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    -- a list of {at, status_code, error}, one per attempt
    attempts        jsonb NOT NULL DEFAULT '[]',
    next_attempt_at timestamptz NOT NULL,
    PRIMARY KEY (webhook_id, event_seq)
);
CREATE INDEX webhook_delivery_due_idx ON webhook_delivery(next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_delivery_order_idx ON webhook_delivery(webhook_id, order_key, event_seq)
    WHERE status = 'pending';
CREATE INDEX webhook_delivery_event_idx ON webhook_delivery(event_seq);

-- Writes an event (and its deliveries) when a webhook of the workspace
-- wants its type.
CREATE FUNCTION webhook_emit(ws uuid, kind text, key uuid, body jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook WHERE workspace_id = ws AND events ? kind) THEN
        RETURN;
    END IF;
    INSERT INTO webhook_event (id, workspace_id, type, order_key, payload, created_at)
    VALUES (gen_random_uuid(), ws, kind, key, body, clock_timestamp())
    RETURNING seq INTO n;
    INSERT INTO webhook_delivery (webhook_id, event_seq, order_key, next_attempt_at)
    SELECT w.id, n, key, clock_timestamp() FROM webhook w
    WHERE w.workspace_id = ws AND w.events ? kind;
END $$;

CREATE FUNCTION webhook_runtime_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        PERFORM webhook_emit(NEW.workspace_id, 'runtime:' || NEW.status, NEW.id,
            jsonb_build_object('runtime_id', NEW.id, 'name', NEW.name,
                'custom_name', NEW.custom_name, 'provider', NEW.provider,
                'daemon_id', NEW.daemon_id, 'owner_id', NEW.owner_id, 'status', NEW.status,
                'offline_reason', NEW.offline_reason));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_runtime_status AFTER INSERT OR UPDATE OF status ON agent_runtime
FOR EACH ROW EXECUTE FUNCTION webhook_runtime_status();

CREATE FUNCTION webhook_task_failed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'failed' AND OLD.status IS DISTINCT FROM 'failed' THEN
        PERFORM webhook_emit(NEW.workspace_id,
            CASE WHEN NEW.failure_reason IN ('queued_expired', 'dispatch_timeout', 'running_timeout')
                 THEN 'task:expired' ELSE 'task:failed' END,
            coalesce(NEW.runtime_id, (SELECT a.runtime_id FROM agent a WHERE a.id = NEW.agent_id),
                     NEW.id),
            jsonb_build_object('task_id', NEW.id, 'agent_id', NEW.agent_id,
                'runtime_id', NEW.runtime_id, 'failure_reason', NEW.failure_reason,
                'error', NEW.error, 'attempt', NEW.attempt));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_task_failed AFTER UPDATE OF status ON agent_task_queue
FOR EACH ROW EXECUTE FUNCTION webhook_task_failed();

CREATE FUNCTION webhook_agent_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        PERFORM webhook_emit(NEW.workspace_id, 'agent:status', NEW.id,
            jsonb_build_object('agent_id', NEW.id, 'name', NEW.name,
                'runtime_id', NEW.runtime_id, 'status', NEW.status,
                'previous_status', OLD.status));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_agent_status AFTER UPDATE OF status ON agent
FOR EACH ROW EXECUTE FUNCTION webhook_agent_status();

CREATE FUNCTION webhook_budget_crossed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    body jsonb := jsonb_build_object('budget_id', NEW.id, 'scope', NEW.scope,
        'scope_id', NEW.scope_id, 'period', NEW.period, 'period_start', NEW.period_start,
        'limit_ticks', NEW.limit_ticks, 'spent_ticks', NEW.spent_ticks,
        'warn_percent', NEW.warn_percent);
BEGIN
    IF NEW.warned_for IS NOT NULL AND NEW.warned_for IS DISTINCT FROM OLD.warned_for THEN
        PERFORM webhook_emit(NEW.workspace_id, 'budget:warning', NEW.id, body);
    END IF;
    IF NEW.exceeded_for IS NOT NULL AND NEW.exceeded_for IS DISTINCT FROM OLD.exceeded_for THEN
        PERFORM webhook_emit(NEW.workspace_id, 'budget:exceeded', NEW.id, body);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_budget_crossed AFTER UPDATE OF warned_for, exceeded_for ON budget
FOR EACH ROW EXECUTE FUNCTION webhook_budget_crossed();
