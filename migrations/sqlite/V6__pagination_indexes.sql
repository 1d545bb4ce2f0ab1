-- Keyset pagination: the paginated lists are ordered by (created_at, id) and
-- resume after the last row sent, so each page is one index range read,
-- however deep into the list it starts.

-- GET /api/runtimes and GET /api/agents (oldest first); these replace the
-- (workspace_id, created_at) indexes, which are their prefixes
CREATE INDEX agent_runtime_workspace_page_idx ON agent_runtime(workspace_id, created_at, id);
DROP INDEX agent_runtime_workspace_created_idx;
CREATE INDEX agent_workspace_page_idx ON agent(workspace_id, created_at, id);
DROP INDEX agent_workspace_idx;

-- GET /api/agents/{id}/tasks (newest first)
CREATE INDEX agent_task_queue_agent_page_idx ON agent_task_queue(agent_id, created_at, id);
