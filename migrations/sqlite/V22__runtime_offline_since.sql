-- Since when a runtime is offline (NULL while online), kept by triggers on
-- every write that changes its status, whichever code path makes it
-- (deregistration, the sweeper, a member's removal, a registration that
-- says so). A row written with it already set (a copy) keeps its value.
ALTER TABLE agent_runtime ADD COLUMN offline_since TEXT;

-- the runtimes offline now: since they were last seen, or last changed
UPDATE agent_runtime SET offline_since = coalesce(last_seen_at, updated_at)
WHERE status = 'offline';

CREATE TRIGGER agent_runtime_offline_since AFTER UPDATE OF status ON agent_runtime
WHEN new.status IS NOT old.status
BEGIN
    UPDATE agent_runtime
    SET offline_since = CASE WHEN new.status = 'offline'
                             THEN strftime('%Y-%m-%dT%H:%M:%fZ', 'now') END
    WHERE id = new.id;
END;

CREATE TRIGGER agent_runtime_offline_since_new AFTER INSERT ON agent_runtime
WHEN new.status = 'offline' AND new.offline_since IS NULL
BEGIN
    UPDATE agent_runtime SET offline_since = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE id = new.id;
END;
