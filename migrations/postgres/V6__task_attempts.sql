-- Retries: an agent's max_attempts bounds how often agenthub runs a task
-- again after a failure of the infrastructure (its runtime did not come
-- back, it was never started, its daemon restarted); each run is a task of
-- its own, numbered by attempt (1 for the first) and pointing at the run
-- it repeats (parent_task_id; also set by a person's rerun).
ALTER TABLE agent
    ADD COLUMN max_attempts bigint NOT NULL DEFAULT 2 CHECK (max_attempts BETWEEN 1 AND 10);
ALTER TABLE agent_task_queue
    ADD COLUMN attempt bigint NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    ADD COLUMN parent_task_id uuid REFERENCES agent_task_queue(id) ON DELETE SET NULL;
CREATE INDEX agent_task_queue_parent_idx ON agent_task_queue(parent_task_id)
    WHERE parent_task_id IS NOT NULL;
