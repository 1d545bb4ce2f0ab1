-- Who queued a task: they may cancel it even when they do not own the
-- agent or the runtime. NULL for tasks queued before this column existed
-- and once the user is deleted.
ALTER TABLE agent_task_queue ADD COLUMN created_by TEXT REFERENCES "user"(id) ON DELETE SET NULL;
