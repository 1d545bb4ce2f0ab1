//! Rows as they would be after a history the API cannot replay quickly (a
//! fleet registered months ago, a year of finished tasks, a token that
//! has run out): for tests and benchmarks, on every engine. Not used by
//! the server.

use crate::domain::{
    AgentId, InvitationId, RuntimeId, RuntimeStatus, TaskId, Timestamp, UserId, WorkspaceId,
};

use super::{dispatch, Conn, Result};

/// A runtime row as a daemon would have registered it at `created_at`.
pub struct SeedRuntime<'a> {
    pub id: RuntimeId,
    pub workspace: WorkspaceId,
    pub daemon_id: &'a str,
    pub name: &'a str,
    pub provider: &'a str,
    pub status: RuntimeStatus,
    pub owner: UserId,
    pub last_seen_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// An agent row created at `created_at` (archived at `archived_at`).
pub struct SeedAgent<'a> {
    pub id: AgentId,
    pub workspace: WorkspaceId,
    pub runtime: RuntimeId,
    pub name: &'a str,
    pub owner: UserId,
    pub archived_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// The kinds of bearer token, each kept in a table of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A user's personal access token (`mul_`).
    Personal,
    /// A daemon token (`mdt_`).
    Daemon,
    /// A claimed task's token (`mat_`).
    Task,
}

/// The moments of a task's life that timeouts are measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskClock {
    /// When it was queued (`created_at`).
    Queued,
    /// When a daemon claimed it (`dispatched_at`).
    Dispatched,
    /// When its daemon said it started (`started_at`).
    Started,
}

pub fn runtime(conn: &Conn<'_>, row: &SeedRuntime<'_>) -> Result<()> {
    dispatch!(conn, seed::runtime(row))
}

/// `count` offline runtimes of `owner`'s in `workspace`, registered at
/// `created_at` by daemons `host-1` … `host-<count>`: a workspace that
/// filled up over years, in one statement.
pub fn offline_runtimes(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    owner: UserId,
    count: u32,
    created_at: Timestamp,
) -> Result<()> {
    dispatch!(
        conn,
        seed::offline_runtimes(workspace, owner, count, created_at)
    )
}

/// Sets when a runtime was last heard from, as if it had been silent
/// since `last_seen_at` (its status stays as it is).
pub fn backdate_runtime(conn: &Conn<'_>, id: RuntimeId, last_seen_at: Timestamp) -> Result<()> {
    dispatch!(conn, seed::backdate_runtime(id, last_seen_at))
}

/// Moves every ping and update `by` into the past, as if that much time
/// had passed since they were queued and last changed.
pub fn age_probes(conn: &Conn<'_>, by: chrono::Duration) -> Result<()> {
    dispatch!(conn, seed::age_probes(by.num_milliseconds()))
}

pub fn agent(conn: &Conn<'_>, row: &SeedAgent<'_>) -> Result<()> {
    dispatch!(conn, seed::agent(row))
}

/// A task that ran and completed at `at`.
pub fn finished_task(
    conn: &Conn<'_>,
    id: TaskId,
    workspace: WorkspaceId,
    agent: AgentId,
    runtime: RuntimeId,
    at: Timestamp,
) -> Result<()> {
    dispatch!(conn, seed::finished_task(id, workspace, agent, runtime, at))
}

/// A task queued and claimed by `runtime`'s daemon at `at`, not started.
pub fn dispatched_task(
    conn: &Conn<'_>,
    id: TaskId,
    workspace: WorkspaceId,
    agent: AgentId,
    runtime: RuntimeId,
    at: Timestamp,
) -> Result<()> {
    dispatch!(
        conn,
        seed::dispatched_task(id, workspace, agent, runtime, at)
    )
}

/// Moves one clock of a task to `at`, as if it had been dispatched or
/// started then (its status stays as it is).
pub fn backdate_task(conn: &Conn<'_>, id: TaskId, clock: TaskClock, at: Timestamp) -> Result<()> {
    dispatch!(conn, seed::backdate_task(id, clock, at))
}

/// Makes the token whose hash is `token_hash` expire at `expires_at` (in
/// the past: it has run out). `false` when no such token exists.
pub fn expire_token(
    conn: &Conn<'_>,
    kind: TokenKind,
    token_hash: &str,
    expires_at: Timestamp,
) -> Result<bool> {
    dispatch!(conn, seed::expire_token(kind, token_hash, expires_at))
}

/// Sets when the token whose hash is `token_hash` was made and when it
/// expires, as if it had been in use that long. `false` when no such
/// token exists.
pub fn backdate_token(
    conn: &Conn<'_>,
    kind: TokenKind,
    token_hash: &str,
    created_at: Timestamp,
    expires_at: Timestamp,
) -> Result<bool> {
    dispatch!(
        conn,
        seed::backdate_token(kind, token_hash, created_at, expires_at)
    )
}

/// Sets when an invitation was sent and when it lapses, as if it had
/// been sent then.
pub fn backdate_invitation(
    conn: &Conn<'_>,
    id: InvitationId,
    created_at: Timestamp,
    expires_at: Timestamp,
) -> Result<()> {
    dispatch!(conn, seed::backdate_invitation(id, created_at, expires_at))
}

/// Every row of every table as text, one line a row, sorted: two dumps are
/// equal when nothing was stored, changed or deleted in between. A
/// personal token's `last_used_at` is left out (using a token records
/// its use), and so are its other columns but `id`, `revoked_at` and
/// `expires_at`.
pub fn dump(conn: &Conn<'_>) -> Result<String> {
    dispatch!(conn, seed::dump())
}
