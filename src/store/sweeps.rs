//! The sweeper's SQL: each function is one bounded batch, meant to run in
//! its own short write transaction (see `jobs::sweeper`).

use crate::domain::{AgentId, RuntimeId, TaskId, Timestamp, WorkspaceId};

use super::{dispatch, Conn, Result};

/// Rows touched per transaction, so a sweep over a large backlog never
/// holds the write lock for long.
pub const BATCH: i64 = 250;

/// A task the sweeper failed.
#[derive(Debug, Clone)]
pub struct FailedTask {
    pub id: TaskId,
    pub workspace_id: WorkspaceId,
    pub agent_id: Option<AgentId>,
    /// Its `failure_reason`.
    pub reason: Option<String>,
}

/// Marks up to [`BATCH`] online runtimes last seen before `cutoff` offline,
/// with the reason `stale`; returns (runtime, workspace) pairs.
pub fn mark_stale_offline(
    conn: &Conn<'_>,
    cutoff: Timestamp,
) -> Result<Vec<(RuntimeId, WorkspaceId)>> {
    dispatch!(conn, sweeps::mark_stale_offline(cutoff))
}

/// Fails up to [`BATCH`] dispatched/running tasks whose runtime is offline
/// (swept as stale or deregistered) and was last heard from before
/// `grace_cutoff`: its daemon did not come back within the reconnect grace
/// (`runtime_reconnect_timeout`).
pub fn fail_tasks_on_offline_runtimes(
    conn: &Conn<'_>,
    grace_cutoff: Timestamp,
) -> Result<Vec<FailedTask>> {
    dispatch!(conn, sweeps::fail_tasks_on_offline_runtimes(grace_cutoff))
}

/// Fails up to [`BATCH`] tasks dispatched before `dispatched_cutoff` (and
/// not under a live prepare lease: their daemon is still preparing them;
/// `dispatch_timeout`), or running since before `running_cutoff` on a
/// runtime that is not online (`running_timeout`: a run whose daemon still
/// heartbeats goes on as long as it takes).
pub fn fail_timed_out_tasks(
    conn: &Conn<'_>,
    dispatched_cutoff: Timestamp,
    running_cutoff: Timestamp,
) -> Result<Vec<FailedTask>> {
    dispatch!(
        conn,
        sweeps::fail_timed_out_tasks(dispatched_cutoff, running_cutoff)
    )
}

/// Fails up to [`BATCH`] tasks queued before `cutoff` for an agent whose
/// runtime is offline and was last heard from before `cutoff`: nothing
/// will claim them (`queued_expired`).
pub fn expire_queued_tasks(conn: &Conn<'_>, cutoff: Timestamp) -> Result<Vec<FailedTask>> {
    dispatch!(conn, sweeps::expire_queued_tasks(cutoff))
}

/// Deletes up to [`BATCH`] offline runtimes last seen before `cutoff` that
/// no agent row (active or archived) refers to; returns (runtime,
/// workspace) pairs.
pub fn delete_abandoned_runtimes(
    conn: &Conn<'_>,
    cutoff: Timestamp,
) -> Result<Vec<(RuntimeId, WorkspaceId)>> {
    dispatch!(conn, sweeps::delete_abandoned_runtimes(cutoff))
}
