//! The sweeper's SQL: each function is one bounded batch, meant to run in
//! its own short write transaction (see `jobs::sweeper`).
//!
//! Each statement picks its batch in a subquery and repeats the condition
//! on the row it changes: an engine that picks the batch from an older
//! snapshot than the rows it writes (READ COMMITTED) then leaves alone a
//! row that a concurrent request changed meanwhile (a heartbeat, a task
//! that ended).

use rusqlite::{params, Connection};

use crate::domain::{RuntimeId, Timestamp, WorkspaceId};
use crate::store::sweeps::*;

pub fn mark_stale_offline(
    conn: &Connection,
    cutoff: Timestamp,
) -> rusqlite::Result<Vec<(RuntimeId, WorkspaceId)>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE agent_runtime SET status = 'offline', offline_reason = ?4, updated_at = ?2
         WHERE id IN (SELECT id FROM agent_runtime
                      WHERE status = 'online' AND last_seen_at < ?1 LIMIT ?3)
           AND status = 'online' AND last_seen_at < ?1
         RETURNING id, workspace_id",
    )?;
    let stale = crate::store::runtimes::reason("stale");
    let rows = stmt.query_map(params![cutoff, Timestamp::now(), BATCH, stale], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    rows.collect()
}

fn failed(row: &rusqlite::Row<'_>) -> rusqlite::Result<FailedTask> {
    Ok(FailedTask {
        id: row.get(0)?,
        workspace_id: row.get(1)?,
        agent_id: row.get(2)?,
        reason: row.get(3)?,
    })
}

pub fn fail_tasks_on_offline_runtimes(
    conn: &Connection,
    grace_cutoff: Timestamp,
) -> rusqlite::Result<Vec<FailedTask>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE agent_task_queue
         SET status = 'failed', error = 'runtime did not reconnect within the grace period',
             failure_reason = 'runtime_reconnect_timeout', completed_at = ?1,
             prepare_lease_expires_at = NULL
         WHERE id IN (
             -- CROSS JOIN keeps this order: scan the few open tasks, then
             -- look their runtime up by id (never scan offline runtimes)
             SELECT t.id FROM agent_task_queue t
             CROSS JOIN agent_runtime r ON r.id = t.runtime_id
             WHERE t.status IN ('dispatched', 'running') AND r.status = 'offline'
               AND (r.last_seen_at IS NULL OR r.last_seen_at < ?3)
             LIMIT ?2)
           AND status IN ('dispatched', 'running')
           AND (SELECT r.status = 'offline' AND (r.last_seen_at IS NULL OR r.last_seen_at < ?3)
                FROM agent_runtime r WHERE r.id = agent_task_queue.runtime_id)
         RETURNING id, workspace_id, agent_id, failure_reason",
    )?;
    let rows = stmt.query_map(params![Timestamp::now(), BATCH, grace_cutoff], failed)?;
    rows.collect()
}

pub fn fail_timed_out_tasks(
    conn: &Connection,
    dispatched_cutoff: Timestamp,
    running_cutoff: Timestamp,
) -> rusqlite::Result<Vec<FailedTask>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE agent_task_queue
         SET status = 'failed', error = 'task timed out',
             failure_reason = CASE WHEN status = 'running' THEN 'running_timeout'
                                   ELSE 'dispatch_timeout' END,
             completed_at = ?3,
             prepare_lease_expires_at = NULL
         WHERE id IN (
             SELECT id FROM agent_task_queue WHERE status = 'dispatched' AND dispatched_at < ?1
               AND (prepare_lease_expires_at IS NULL OR prepare_lease_expires_at < ?3)
             UNION ALL
             SELECT t.id FROM agent_task_queue t WHERE t.status = 'running' AND t.started_at < ?2
               AND NOT EXISTS (SELECT 1 FROM agent_runtime r
                               WHERE r.id = t.runtime_id AND r.status = 'online')
             LIMIT ?4)
           AND ((status = 'dispatched' AND dispatched_at < ?1
                 AND (prepare_lease_expires_at IS NULL OR prepare_lease_expires_at < ?3))
                OR (status = 'running' AND started_at < ?2
                    AND NOT EXISTS (SELECT 1 FROM agent_runtime r
                                    WHERE r.id = agent_task_queue.runtime_id
                                      AND r.status = 'online')))
         RETURNING id, workspace_id, agent_id, failure_reason",
    )?;
    let rows = stmt.query_map(
        params![dispatched_cutoff, running_cutoff, Timestamp::now(), BATCH],
        failed,
    )?;
    rows.collect()
}

pub fn expire_queued_tasks(
    conn: &Connection,
    cutoff: Timestamp,
) -> rusqlite::Result<Vec<FailedTask>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE agent_task_queue
         SET status = 'failed', error = 'task expired in the queue: its runtime stayed offline',
             failure_reason = 'queued_expired', completed_at = ?1
         WHERE id IN (
             -- the queued tasks older than the cutoff, from the partial
             -- index (not every queued task, as the status index would)
             SELECT t.id FROM agent_task_queue t INDEXED BY agent_task_queue_queued_idx
             CROSS JOIN agent a ON a.id = t.agent_id
             CROSS JOIN agent_runtime r ON r.id = a.runtime_id
             WHERE t.status = 'queued' AND t.created_at < ?2
               AND r.status = 'offline' AND (r.last_seen_at IS NULL OR r.last_seen_at < ?2)
             LIMIT ?3)
           AND status = 'queued'
         RETURNING id, workspace_id, agent_id, failure_reason",
    )?;
    let rows = stmt.query_map(params![Timestamp::now(), cutoff, BATCH], failed)?;
    rows.collect()
}

pub fn delete_abandoned_runtimes(
    conn: &Connection,
    cutoff: Timestamp,
) -> rusqlite::Result<Vec<(RuntimeId, WorkspaceId)>> {
    let mut stmt = conn.prepare_cached(
        "DELETE FROM agent_runtime
         WHERE id IN (
             SELECT r.id FROM agent_runtime r
             WHERE r.status = 'offline' AND r.last_seen_at < ?1
               AND NOT EXISTS (SELECT 1 FROM agent a WHERE a.runtime_id = r.id)
             LIMIT ?2)
           AND status = 'offline' AND last_seen_at < ?1
         RETURNING id, workspace_id",
    )?;
    let rows = stmt.query_map(params![cutoff, BATCH], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}
