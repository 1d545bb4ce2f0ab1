use rusqlite::{params, Connection};

use crate::domain::Id;
use crate::store::seed::*;

pub fn runtime(conn: &Connection, r: &SeedRuntime<'_>) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO agent_runtime (id, workspace_id, daemon_id, name, runtime_mode, provider,
             status, owner_id, last_seen_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'local', ?5, ?6, ?7, ?8, ?9, ?9)",
        params![
            r.id,
            r.workspace,
            r.daemon_id,
            r.name,
            r.provider,
            r.status,
            r.owner,
            r.last_seen_at,
            r.created_at
        ],
    )?;
    Ok(())
}

pub fn agent(conn: &Connection, a: &SeedAgent<'_>) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO agent (id, workspace_id, runtime_id, name, runtime_mode, owner_id,
             archived_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'local', ?5, ?6, ?7, ?7)",
        params![
            a.id,
            a.workspace,
            a.runtime,
            a.name,
            a.owner,
            a.archived_at,
            a.created_at
        ],
    )?;
    Ok(())
}

pub fn finished_task(
    conn: &Connection,
    id: Id,
    workspace: Id,
    agent: Id,
    runtime: Id,
    at: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO agent_task_queue (id, workspace_id, agent_id, runtime_id, status,
             started_at, completed_at, created_at)
         VALUES (?1, ?2, ?3, ?4, 'completed', ?5, ?5, ?5)",
        params![id, workspace, agent, runtime, at],
    )?;
    Ok(())
}
