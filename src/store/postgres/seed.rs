//! Rows for tests and benchmarks: states the API cannot reach quickly (backdated rows, fleets).

use postgres::error::SqlState;

use super::Client;

use crate::domain::{
    AgentId, InvitationId, RuntimeId, TaskId, TaskStatus, Timestamp, UserId, WorkspaceId,
};
use crate::store::seed::*;

pub fn runtime(conn: &mut Client, r: &SeedRuntime<'_>) -> Result<(), postgres::Error> {
    conn.execute(
        "INSERT INTO agent_runtime (id, workspace_id, daemon_id, name, runtime_mode, provider,
             status, owner_id, last_seen_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'local', $5, $6, $7, $8, $9, $9)",
        &[
            &r.id,
            &r.workspace,
            &r.daemon_id,
            &r.name,
            &r.provider,
            &r.status,
            &r.owner,
            &r.last_seen_at,
            &r.created_at,
        ],
    )?;
    Ok(())
}

/// The trigger that keeps `workspace.runtime_count`, one update of the
/// workspace row per inserted runtime.
const COUNT_TRIGGER: &str = "agent_runtime_counted";

/// One `INSERT … SELECT generate_series(…)`, with the same made-up ids as
/// on SQLite. Inside a transaction (as every store write is), the
/// per-row counting trigger is switched off for the statement and the
/// count moved once: tens of thousands of updates of one workspace row in
/// one transaction grow its version chain and take minutes on PostgreSQL.
/// The switch is transactional (a failure rolls it back) and holds a SHARE
/// ROW EXCLUSIVE lock on `agent_runtime` until commit. Where it cannot be
/// taken (outside a transaction, or not the table's owner), the rows are
/// inserted with the trigger on: the same rows, slower.
pub fn offline_runtimes(
    conn: &mut Client,
    workspace: WorkspaceId,
    owner: UserId,
    count: u32,
    created_at: Timestamp,
) -> Result<(), postgres::Error> {
    if count == 0 {
        return Ok(());
    }
    // ids are made up from the row number: unique, and valid UUIDs
    let insert = "INSERT INTO agent_runtime (id, workspace_id, daemon_id, name, runtime_mode,
             provider, status, owner_id, created_at, updated_at)
         SELECT (lpad(to_hex(i), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid,
             $1, 'host-' || i, 'claude', 'local', 'claude', 'offline', $2, $4, $4
         FROM generate_series(1::bigint, $3::bigint) AS n(i)";
    let count = i64::from(count);
    let params: [&(dyn postgres::types::ToSql + Sync); 4] =
        [&workspace, &owner, &count, &created_at];
    if !trigger_switched_off(conn)? {
        conn.execute(insert, &params)?;
        return Ok(());
    }
    conn.execute(
        &format!(
            "WITH inserted AS ({insert} RETURNING 1)
             UPDATE workspace SET runtime_count = runtime_count + (SELECT count(*) FROM inserted)
             WHERE id = $1"
        ),
        &params,
    )?;
    conn.batch_execute(&format!(
        "ALTER TABLE agent_runtime ENABLE TRIGGER {COUNT_TRIGGER};
         RELEASE SAVEPOINT seed_offline_runtimes"
    ))
}

/// Switches the runtime counting trigger off until it is switched back on
/// in this transaction; `false` (and nothing changed) where that cannot be
/// done. Leaves the savepoint `seed_offline_runtimes` open on success.
fn trigger_switched_off(conn: &mut Client) -> Result<bool, postgres::Error> {
    match conn.batch_execute("SAVEPOINT seed_offline_runtimes") {
        Ok(()) => {}
        // not in a transaction: the switch would be seen by everyone
        Err(e) if e.code() == Some(&SqlState::NO_ACTIVE_SQL_TRANSACTION) => return Ok(false),
        Err(e) => return Err(e),
    }
    let switched = conn.batch_execute(&format!(
        "ALTER TABLE agent_runtime DISABLE TRIGGER {COUNT_TRIGGER}"
    ));
    match switched {
        Ok(()) => Ok(true),
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
            conn.batch_execute(
                "ROLLBACK TO SAVEPOINT seed_offline_runtimes;
                 RELEASE SAVEPOINT seed_offline_runtimes",
            )?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

pub fn backdate_runtime(
    conn: &mut Client,
    id: RuntimeId,
    last_seen_at: Timestamp,
) -> Result<(), postgres::Error> {
    conn.execute(
        "UPDATE agent_runtime SET last_seen_at = $2 WHERE id = $1",
        &[&id, &last_seen_at],
    )?;
    Ok(())
}

pub fn age_probes(conn: &mut Client, by_ms: i64) -> Result<(), postgres::Error> {
    conn.execute(
        "UPDATE runtime_probe
         SET created_at = created_at - $1::float8 * interval '1 millisecond',
             updated_at = updated_at - $1::float8 * interval '1 millisecond'",
        &[&(by_ms as f64)],
    )?;
    Ok(())
}

pub fn agent(conn: &mut Client, a: &SeedAgent<'_>) -> Result<(), postgres::Error> {
    conn.execute(
        "INSERT INTO agent (id, workspace_id, runtime_id, name, runtime_mode, owner_id,
             archived_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'local', $5, $6, $7, $7)",
        &[
            &a.id,
            &a.workspace,
            &a.runtime,
            &a.name,
            &a.owner,
            &a.archived_at,
            &a.created_at,
        ],
    )?;
    Ok(())
}

pub fn finished_task(
    conn: &mut Client,
    id: TaskId,
    workspace: WorkspaceId,
    agent: AgentId,
    runtime: RuntimeId,
    at: Timestamp,
) -> Result<(), postgres::Error> {
    placed_task(
        conn,
        id,
        (workspace, agent, runtime),
        TaskStatus::Completed,
        at,
    )
}

pub fn dispatched_task(
    conn: &mut Client,
    id: TaskId,
    workspace: WorkspaceId,
    agent: AgentId,
    runtime: RuntimeId,
    at: Timestamp,
) -> Result<(), postgres::Error> {
    placed_task(
        conn,
        id,
        (workspace, agent, runtime),
        TaskStatus::Dispatched,
        at,
    )
}

/// A task of `agent` on `runtime` that reached `status` at `at`: claimed
/// then (dispatched), or started and completed then. The clocks a status
/// sets are chosen here rather than by `CASE` in SQL, so every parameter
/// has one type.
fn placed_task(
    conn: &mut Client,
    id: TaskId,
    (workspace, agent, runtime): (WorkspaceId, AgentId, RuntimeId),
    status: TaskStatus,
    at: Timestamp,
) -> Result<(), postgres::Error> {
    let dispatched_at = (status == TaskStatus::Dispatched).then_some(at);
    let finished_at = (status == TaskStatus::Completed).then_some(at);
    conn.execute(
        "INSERT INTO agent_task_queue (id, workspace_id, agent_id, runtime_id, status,
             dispatched_at, started_at, completed_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
        &[
            &id,
            &workspace,
            &agent,
            &runtime,
            &status,
            &dispatched_at,
            &finished_at,
            &at,
        ],
    )?;
    Ok(())
}

pub fn backdate_task(
    conn: &mut Client,
    id: TaskId,
    clock: TaskClock,
    at: Timestamp,
) -> Result<(), postgres::Error> {
    let column = match clock {
        TaskClock::Queued => "created_at",
        TaskClock::Dispatched => "dispatched_at",
        TaskClock::Started => "started_at",
    };
    conn.execute(
        &format!("UPDATE agent_task_queue SET {column} = $2 WHERE id = $1"),
        &[&id, &at],
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
    conn: &mut Client,
    kind: TokenKind,
    token_hash: &str,
    expires_at: Timestamp,
) -> Result<bool, postgres::Error> {
    let table = token_table(kind);
    let changed = conn.execute(
        &format!("UPDATE {table} SET expires_at = $2 WHERE token_hash = $1"),
        &[&token_hash, &expires_at],
    )?;
    Ok(changed > 0)
}

pub fn backdate_token(
    conn: &mut Client,
    kind: TokenKind,
    token_hash: &str,
    created_at: Timestamp,
    expires_at: Timestamp,
) -> Result<bool, postgres::Error> {
    let table = token_table(kind);
    let changed = conn.execute(
        &format!("UPDATE {table} SET created_at = $2, expires_at = $3 WHERE token_hash = $1"),
        &[&token_hash, &created_at, &expires_at],
    )?;
    Ok(changed > 0)
}

pub fn backdate_invitation(
    conn: &mut Client,
    id: InvitationId,
    created_at: Timestamp,
    expires_at: Timestamp,
) -> Result<(), postgres::Error> {
    conn.execute(
        "UPDATE invitation SET created_at = $2, expires_at = $3 WHERE id = $1",
        &[&id, &created_at, &expires_at],
    )?;
    Ok(())
}

/// The tables of the current schema but refinery's and `node_message`
/// (the nodes' event relay writes it on its own, after the requests that
/// published: not the install's data), by name; each as
/// `table: <row as PostgreSQL's record text>` lines, sorted.
pub fn dump(conn: &mut Client) -> Result<String, postgres::Error> {
    let tables = conn
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
                 AND table_name::text NOT LIKE 'refinery%'
                 AND table_name::text <> 'node_message'
             ORDER BY table_name::text COLLATE \"C\"",
            &[],
        )?
        .iter()
        .map(|r| r.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = String::new();
    for table in tables {
        let quoted = format!("\"{}\"", table.replace('"', "\"\""));
        let sql = if table == "personal_access_token" {
            format!("SELECT ROW(t.id, t.revoked_at, t.expires_at)::text FROM {quoted} t")
        } else {
            format!("SELECT ROW(t.*)::text FROM {quoted} t")
        };
        let mut lines = conn
            .query(&sql, &[])?
            .iter()
            .map(|r| {
                r.try_get::<_, String>(0)
                    .map(|row| format!("{table}: {row}\n"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        lines.sort();
        out.extend(lines);
    }
    Ok(out)
}
