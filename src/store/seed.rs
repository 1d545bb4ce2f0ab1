//! Rows as they would be after a history the API cannot replay quickly (a
//! fleet registered months ago, a year of finished tasks): for tests and
//! benchmarks, on every engine. Not used by the server.

use crate::domain::Id;

use super::{dispatch, Conn, Result};

/// A runtime row as a daemon would have registered it at `created_at`.
pub struct SeedRuntime<'a> {
    pub id: Id,
    pub workspace: Id,
    pub daemon_id: &'a str,
    pub name: &'a str,
    pub provider: &'a str,
    pub status: &'a str,
    pub owner: Id,
    pub last_seen_at: Option<&'a str>,
    pub created_at: &'a str,
}

/// An agent row created at `created_at` (archived at `archived_at`).
pub struct SeedAgent<'a> {
    pub id: Id,
    pub workspace: Id,
    pub runtime: Id,
    pub name: &'a str,
    pub owner: Id,
    pub archived_at: Option<&'a str>,
    pub created_at: &'a str,
}

pub fn runtime(conn: &Conn<'_>, row: &SeedRuntime<'_>) -> Result<()> {
    dispatch!(conn, seed::runtime(row))
}

pub fn agent(conn: &Conn<'_>, row: &SeedAgent<'_>) -> Result<()> {
    dispatch!(conn, seed::agent(row))
}

/// A task that ran and completed at `at`.
pub fn finished_task(
    conn: &Conn<'_>,
    id: Id,
    workspace: Id,
    agent: Id,
    runtime: Id,
    at: &str,
) -> Result<()> {
    dispatch!(conn, seed::finished_task(id, workspace, agent, runtime, at))
}
