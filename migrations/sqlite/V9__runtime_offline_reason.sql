-- Why a runtime is offline, so people see what to do about it: a JSON object
-- {code, detail?, repair?} that a daemon sends when it takes a runtime down
-- (a CLI the OS refuses to run) or that the server sets itself (`stale`,
-- `deregistered`, `member_removed`, `profile_failed`). NULL while online:
-- every path that brings a runtime online clears it.
ALTER TABLE agent_runtime ADD COLUMN offline_reason TEXT
    CHECK (offline_reason IS NULL
           OR (json_valid(offline_reason) AND json_type(offline_reason) = 'object'));

-- A registration folds the runtimes of the machine's former daemon ids
-- (`legacy_daemon_ids`, hostnames) into the new row. Hostnames drift in
-- case between boots, so they are compared case-insensitively; this index
-- keeps each lookup a point read instead of a scan of the workspace.
CREATE INDEX agent_runtime_daemon_nocase_idx
    ON agent_runtime(workspace_id, provider, lower(daemon_id));
