-- Indexes the background sweeper's predicates rely on, so each step reads
-- only the rows it changes, however many runtimes and tasks there are.

-- stale sweep (online, last seen before a cutoff) and GC (offline, last
-- seen before the TTL)
CREATE INDEX agent_runtime_status_seen_idx ON agent_runtime(status, last_seen_at);

-- dispatched tasks by dispatch time, running tasks by start time: the
-- timeout step, and the scan for work stranded on offline runtimes
CREATE INDEX agent_task_queue_dispatched_idx ON agent_task_queue(status, dispatched_at);
CREATE INDEX agent_task_queue_started_idx ON agent_task_queue(status, started_at);
