-- Server-side capacity, beside each agent's max_concurrent_tasks: how many
-- tasks may be dispatched or running at once on one runtime, on one
-- machine (a daemon of one owner, across workspaces) and in one workspace.
-- NULL: no limit. The claim checks every limit on the row it writes, with
-- the machine's and the workspace's advisory locks held while it counts.
ALTER TABLE agent_runtime ADD COLUMN max_concurrent_tasks bigint
    CHECK (max_concurrent_tasks BETWEEN 1 AND 1000);
ALTER TABLE workspace ADD COLUMN max_concurrent_tasks bigint
    CHECK (max_concurrent_tasks BETWEEN 1 AND 10000);

-- A machine is what one daemon of one owner registered, in any workspace:
-- its owner sets how many tasks the machine runs at once.
CREATE TABLE machine_limit (
    owner_id             uuid NOT NULL REFERENCES "user"(id) ON DELETE CASCADE,
    daemon_id            text COLLATE "C" NOT NULL CHECK (length(daemon_id) > 0),
    max_concurrent_tasks bigint NOT NULL CHECK (max_concurrent_tasks BETWEEN 1 AND 1000),
    updated_at           timestamptz NOT NULL,
    PRIMARY KEY (owner_id, daemon_id)
);

-- a machine's runtimes, and a workspace's busy tasks, each read off an index
CREATE INDEX agent_runtime_machine_idx ON agent_runtime(owner_id, daemon_id);
CREATE INDEX agent_task_queue_busy_idx ON agent_task_queue(workspace_id)
    WHERE status IN ('dispatched', 'running');
