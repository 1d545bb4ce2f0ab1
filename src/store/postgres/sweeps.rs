//! The sweeper's SQL: each function is one bounded batch, meant to run in
//! its own short write transaction (see `jobs::sweeper`).
//!
//! Each statement picks its batch in a subquery and repeats the condition
//! on the row it changes: the batch is picked from the statement's
//! snapshot, and a row a concurrent request changed meanwhile (a
//! heartbeat, a task that ended) is waited for and re-checked in its
//! latest version (READ COMMITTED), so the repeated condition leaves it
//! alone.

use postgres::Row;

use super::Client;

use crate::domain::{RuntimeId, Timestamp, WorkspaceId};
use crate::store::sweeps::*;

fn pair(row: &Row) -> Result<(RuntimeId, WorkspaceId), postgres::Error> {
    Ok((row.try_get(0)?, row.try_get(1)?))
}

fn failed(row: &Row) -> Result<FailedTask, postgres::Error> {
    Ok(FailedTask {
        id: row.try_get(0)?,
        workspace_id: row.try_get(1)?,
        agent_id: row.try_get(2)?,
        reason: row.try_get(3)?,
    })
}

pub fn mark_stale_offline(
    conn: &mut Client,
    cutoff: Timestamp,
) -> Result<Vec<(RuntimeId, WorkspaceId)>, postgres::Error> {
    let stale = crate::store::runtimes::reason("stale");
    conn.query(
        "UPDATE agent_runtime
         SET status = 'offline', offline_reason = $4::text::jsonb, updated_at = $2
         WHERE id IN (SELECT id FROM agent_runtime
                      WHERE status = 'online' AND last_seen_at < $1 LIMIT $3)
           AND status = 'online' AND last_seen_at < $1
         RETURNING id, workspace_id",
        &[&cutoff, &Timestamp::now(), &BATCH, &stale],
    )?
    .iter()
    .map(pair)
    .collect()
}

pub fn fail_tasks_on_offline_runtimes(
    conn: &mut Client,
    grace_cutoff: Timestamp,
) -> Result<Vec<FailedTask>, postgres::Error> {
    // (SQLite's CROSS JOIN fixes its join order; PostgreSQL's planner
    // picks the order from statistics, and takes no ON with CROSS JOIN)
    conn.query(
        "UPDATE agent_task_queue
         SET status = 'failed', error = 'runtime did not reconnect within the grace period',
             failure_reason = 'runtime_reconnect_timeout', completed_at = $1,
             prepare_lease_expires_at = NULL
         WHERE id IN (
             SELECT t.id FROM agent_task_queue t
             JOIN agent_runtime r ON r.id = t.runtime_id
             WHERE t.status IN ('dispatched', 'running') AND r.status = 'offline'
               AND (r.last_seen_at IS NULL OR r.last_seen_at < $3)
             LIMIT $2)
           AND status IN ('dispatched', 'running')
           AND (SELECT r.status = 'offline' AND (r.last_seen_at IS NULL OR r.last_seen_at < $3)
                FROM agent_runtime r WHERE r.id = agent_task_queue.runtime_id)
         RETURNING id, workspace_id, agent_id, failure_reason",
        &[&Timestamp::now(), &BATCH, &grace_cutoff],
    )?
    .iter()
    .map(failed)
    .collect()
}

pub fn fail_timed_out_tasks(
    conn: &mut Client,
    dispatched_cutoff: Timestamp,
    running_cutoff: Timestamp,
) -> Result<Vec<FailedTask>, postgres::Error> {
    conn.query(
        "UPDATE agent_task_queue
         SET status = 'failed', error = 'task timed out',
             failure_reason = CASE WHEN status = 'running' THEN 'running_timeout'
                                   ELSE 'dispatch_timeout' END,
             completed_at = $3,
             prepare_lease_expires_at = NULL
         WHERE id IN (
             SELECT id FROM agent_task_queue WHERE status = 'dispatched' AND dispatched_at < $1
               AND (prepare_lease_expires_at IS NULL OR prepare_lease_expires_at < $3)
             UNION ALL
             SELECT t.id FROM agent_task_queue t WHERE t.status = 'running' AND t.started_at < $2
               AND NOT EXISTS (SELECT 1 FROM agent_runtime r
                               WHERE r.id = t.runtime_id AND r.status = 'online')
             LIMIT $4)
           AND ((status = 'dispatched' AND dispatched_at < $1
                 AND (prepare_lease_expires_at IS NULL OR prepare_lease_expires_at < $3))
                OR (status = 'running' AND started_at < $2
                    AND NOT EXISTS (SELECT 1 FROM agent_runtime r
                                    WHERE r.id = agent_task_queue.runtime_id
                                      AND r.status = 'online')))
         RETURNING id, workspace_id, agent_id, failure_reason",
        &[
            &dispatched_cutoff,
            &running_cutoff,
            &Timestamp::now(),
            &BATCH,
        ],
    )?
    .iter()
    .map(failed)
    .collect()
}

pub fn expire_queued_tasks(
    conn: &mut Client,
    cutoff: Timestamp,
) -> Result<Vec<FailedTask>, postgres::Error> {
    conn.query(
        "UPDATE agent_task_queue
         SET status = 'failed', error = 'task expired in the queue: its runtime stayed offline',
             failure_reason = 'queued_expired', completed_at = $1
         WHERE id IN (
             SELECT t.id FROM agent_task_queue t
             JOIN agent a ON a.id = t.agent_id
             JOIN agent_runtime r ON r.id = a.runtime_id
             WHERE t.status = 'queued' AND t.created_at < $2
               AND r.status = 'offline' AND (r.last_seen_at IS NULL OR r.last_seen_at < $2)
             LIMIT $3)
           AND status = 'queued'
         RETURNING id, workspace_id, agent_id, failure_reason",
        &[&Timestamp::now(), &cutoff, &BATCH],
    )?
    .iter()
    .map(failed)
    .collect()
}

pub fn delete_abandoned_runtimes(
    conn: &mut Client,
    cutoff: Timestamp,
) -> Result<Vec<(RuntimeId, WorkspaceId)>, postgres::Error> {
    conn.query(
        "DELETE FROM agent_runtime
         WHERE id IN (
             SELECT r.id FROM agent_runtime r
             WHERE r.status = 'offline' AND r.last_seen_at < $1
               AND NOT EXISTS (SELECT 1 FROM agent a WHERE a.runtime_id = r.id)
             LIMIT $2)
           AND status = 'offline' AND last_seen_at < $1
         RETURNING id, workspace_id",
        &[&cutoff, &BATCH],
    )?
    .iter()
    .map(pair)
    .collect()
}
