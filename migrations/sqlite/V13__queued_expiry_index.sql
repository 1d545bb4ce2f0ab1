-- Queued tasks by age, for the sweeper's queued TTL (`queued_expired`):
-- it reads only the queued tasks older than the cutoff, however long the
-- history of finished ones.
CREATE INDEX agent_task_queue_queued_idx ON agent_task_queue(created_at) WHERE status = 'queued';
