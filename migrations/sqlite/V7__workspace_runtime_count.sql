-- How many runtimes each workspace holds, kept by triggers, so the cap on
-- runtimes per workspace is checked by reading one row instead of counting
-- the workspace's runtimes on every registration that adds one (which grew
-- with the fleet).
ALTER TABLE workspace ADD COLUMN runtime_count INTEGER NOT NULL DEFAULT 0
    CHECK (runtime_count >= 0);

UPDATE workspace SET runtime_count =
    (SELECT count(*) FROM agent_runtime r WHERE r.workspace_id = workspace.id);

CREATE TRIGGER agent_runtime_counted AFTER INSERT ON agent_runtime
BEGIN
    UPDATE workspace SET runtime_count = runtime_count + 1 WHERE id = NEW.workspace_id;
END;

CREATE TRIGGER agent_runtime_uncounted AFTER DELETE ON agent_runtime
BEGIN
    UPDATE workspace SET runtime_count = runtime_count - 1 WHERE id = OLD.workspace_id;
END;
