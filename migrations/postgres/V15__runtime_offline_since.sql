-- Since when a runtime is offline (NULL while online), kept by a trigger
-- on every write that changes its status, whichever code path makes it
-- (deregistration, the sweeper, a member's removal, a registration that
-- says so). A row written with it already set (a copy) keeps its value.
ALTER TABLE agent_runtime ADD COLUMN offline_since timestamptz;

-- the runtimes offline now: since they were last seen, or last changed
UPDATE agent_runtime SET offline_since = coalesce(last_seen_at, updated_at)
WHERE status = 'offline';

CREATE FUNCTION agent_runtime_offline_since() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status = 'offline' AND NEW.offline_since IS NULL THEN
            NEW.offline_since := now();
        END IF;
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        NEW.offline_since := CASE WHEN NEW.status = 'offline' THEN now() END;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER agent_runtime_offline_since BEFORE INSERT OR UPDATE OF status ON agent_runtime
FOR EACH ROW EXECUTE FUNCTION agent_runtime_offline_since();
