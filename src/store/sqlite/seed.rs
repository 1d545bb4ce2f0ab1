use rusqlite::{params, Connection};

use crate::domain::{
    AgentId, InvitationId, RuntimeId, TaskId, TaskStatus, Timestamp, UserId, WorkspaceId,
};
use crate::store::seed::*;

pub fn runtime(conn: &Connection, r: &SeedRuntime<'_>) -> rusqlite::Result<()> {
    // cached: benchmarks seed fleets of 100,000 runtimes row by row
    conn.prepare_cached(
        "INSERT INTO agent_runtime (id, workspace_id, daemon_id, name, runtime_mode, provider,
             status, owner_id, last_seen_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'local', ?5, ?6, ?7, ?8, ?9, ?9)",
    )?
    .execute(params![
        r.id,
        r.workspace,
        r.daemon_id,
        r.name,
        r.provider,
        r.status,
        r.owner,
        r.last_seen_at,
        r.created_at
    ])?;
    Ok(())
}

pub fn offline_runtimes(
    conn: &Connection,
    workspace: WorkspaceId,
    owner: UserId,
    count: u32,
    created_at: Timestamp,
) -> rusqlite::Result<()> {
    // ids are made up from the row number: unique, and valid UUIDs
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 WHERE ?3 > 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?3)
         INSERT INTO agent_runtime (id, workspace_id, daemon_id, name, runtime_mode, provider,
             status, owner_id, created_at, updated_at)
         SELECT printf('%08x-0000-4000-8000-%012x', i, i), ?1, 'host-' || i, 'claude', 'local',
             'claude', 'offline', ?2, ?4, ?4
         FROM n",
        params![workspace, owner, count, created_at],
    )?;
    Ok(())
}

pub fn backdate_runtime(
    conn: &Connection,
    id: RuntimeId,
    last_seen_at: Timestamp,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE agent_runtime SET last_seen_at = ?2 WHERE id = ?1",
        params![id, last_seen_at],
    )?;
    Ok(())
}

pub fn age_probes(conn: &Connection, by_ms: i64) -> rusqlite::Result<()> {
    // the stored form of a time, moved back `by_ms` milliseconds
    let back = "strftime('%Y-%m-%dT%H:%M:%fZ', julianday(replace(COL, 'Z', '')) - ?1 / 86400000.0)";
    conn.execute(
        &format!(
            "UPDATE runtime_probe SET created_at = {}, updated_at = {}",
            back.replace("COL", "created_at"),
            back.replace("COL", "updated_at")
        ),
        [by_ms],
    )?;
    Ok(())
}

pub fn agent(conn: &Connection, a: &SeedAgent<'_>) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO agent (id, workspace_id, runtime_id, name, runtime_mode, owner_id,
             archived_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'local', ?5, ?6, ?7, ?7)",
    )?
    .execute(params![
        a.id,
        a.workspace,
        a.runtime,
        a.name,
        a.owner,
        a.archived_at,
        a.created_at
    ])?;
    Ok(())
}

pub fn finished_task(
    conn: &Connection,
    id: TaskId,
    workspace: WorkspaceId,
    agent: AgentId,
    runtime: RuntimeId,
    at: Timestamp,
) -> rusqlite::Result<()> {
    placed_task(
        conn,
        id,
        (workspace, agent, runtime),
        TaskStatus::Completed,
        at,
    )
}

pub fn dispatched_task(
    conn: &Connection,
    id: TaskId,
    workspace: WorkspaceId,
    agent: AgentId,
    runtime: RuntimeId,
    at: Timestamp,
) -> rusqlite::Result<()> {
    placed_task(
        conn,
        id,
        (workspace, agent, runtime),
        TaskStatus::Dispatched,
        at,
    )
}

/// A task of `agent` on `runtime` that reached `status` at `at`: claimed
/// then (dispatched), or started and completed then.
fn placed_task(
    conn: &Connection,
    id: TaskId,
    (workspace, agent, runtime): (WorkspaceId, AgentId, RuntimeId),
    status: TaskStatus,
    at: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO agent_task_queue (id, workspace_id, agent_id, runtime_id, status,
             dispatched_at, started_at, completed_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5,
             CASE WHEN ?5 = 'dispatched' THEN ?6 END,
             CASE WHEN ?5 = 'completed' THEN ?6 END,
             CASE WHEN ?5 = 'completed' THEN ?6 END, ?6)",
    )?
    .execute(params![id, workspace, agent, runtime, status, at])?;
    Ok(())
}

pub fn backdate_task(
    conn: &Connection,
    id: TaskId,
    clock: TaskClock,
    at: Timestamp,
) -> rusqlite::Result<()> {
    let column = match clock {
        TaskClock::Queued => "created_at",
        TaskClock::Dispatched => "dispatched_at",
        TaskClock::Started => "started_at",
    };
    conn.execute(
        &format!("UPDATE agent_task_queue SET {column} = ?2 WHERE id = ?1"),
        params![id, at],
    )?;
    Ok(())
}

fn token_table(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Personal => "personal_access_token",
        TokenKind::Daemon => "daemon_token",
        TokenKind::Task => "task_token",
    }
}

pub fn expire_token(
    conn: &Connection,
    kind: TokenKind,
    token_hash: &str,
    expires_at: Timestamp,
) -> rusqlite::Result<bool> {
    let table = token_table(kind);
    let changed = conn.execute(
        &format!("UPDATE {table} SET expires_at = ?2 WHERE token_hash = ?1"),
        params![token_hash, expires_at],
    )?;
    Ok(changed > 0)
}

pub fn backdate_token(
    conn: &Connection,
    kind: TokenKind,
    token_hash: &str,
    created_at: Timestamp,
    expires_at: Timestamp,
) -> rusqlite::Result<bool> {
    let table = token_table(kind);
    let changed = conn.execute(
        &format!("UPDATE {table} SET created_at = ?2, expires_at = ?3 WHERE token_hash = ?1"),
        params![token_hash, created_at, expires_at],
    )?;
    Ok(changed > 0)
}

pub fn backdate_invitation(
    conn: &Connection,
    id: InvitationId,
    created_at: Timestamp,
    expires_at: Timestamp,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE invitation SET created_at = ?2, expires_at = ?3 WHERE id = ?1",
        params![id, created_at, expires_at],
    )?;
    Ok(())
}

pub fn dump(conn: &Connection) -> rusqlite::Result<String> {
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master
             WHERE type = 'table' AND name NOT LIKE 'refinery%' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = String::new();
    for table in tables {
        let sql = if table == "personal_access_token" {
            "SELECT id, revoked_at, expires_at FROM personal_access_token".to_string()
        } else {
            format!("SELECT * FROM \"{table}\"")
        };
        let mut lines = dump_rows(conn, &table, &sql)?;
        lines.sort();
        out.extend(lines);
    }
    Ok(out)
}

/// `table: v1|v2|…` for each row `sql` returns.
fn dump_rows(conn: &Connection, table: &str, sql: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(sql)?;
    let n = stmt.column_count();
    let rows = stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                r.get::<_, rusqlite::types::Value>(i)
                    .map(|v| format!("{v:?}"))
            })
            .collect::<rusqlite::Result<Vec<_>>>()
    })?;
    rows.map(|row| Ok(format!("{table}: {}\n", row?.join("|"))))
        .collect()
}
