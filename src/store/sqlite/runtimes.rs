//! `agent_runtime` rows: registration upserts, heartbeats, listing, delete.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::stored_time;

use crate::domain::{RuntimeId, RuntimeStatus, Timestamp, UserId, WorkspaceId};
use crate::store::runtimes::*;
use crate::store::Error;

const COLUMNS: &str = "id, workspace_id, daemon_id, name, runtime_mode, provider, status, \
     device_info, metadata, owner_id, last_seen_at, created_at, updated_at, offline_reason, \
     visibility, custom_name, offline_since, max_concurrent_tasks, \
     (SELECT m.max_concurrent_tasks FROM machine_limit m \
      WHERE m.owner_id = agent_runtime.owner_id AND m.daemon_id = agent_runtime.daemon_id)";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Runtime> {
    let metadata: String = row.get(8)?;
    let metadata = metadata_object(serde_json::from_str(&metadata).ok());
    Ok(Runtime {
        id: row.get(0)?,
        workspace_id: row.get(1)?,
        daemon_id: row.get(2)?,
        name: row.get(3)?,
        runtime_mode: row.get(4)?,
        provider: row.get(5)?,
        status: row.get(6)?,
        device_info: row.get(7)?,
        metadata,
        owner_id: row.get(9)?,
        last_seen_at: row.get(10)?,
        created_at: row.get(11)?,
        updated_at: row.get(12)?,
        offline_reason: row
            .get::<_, Option<String>>(13)?
            .and_then(|text| serde_json::from_str(&text).ok()),
        visibility: row.get(14)?,
        custom_name: row.get(15)?,
        offline_since: row.get(16)?,
        max_concurrent_tasks: row.get(17)?,
        machine_max_concurrent_tasks: row.get(18)?,
    })
}

pub fn set(
    conn: &Connection,
    id: RuntimeId,
    setting: Setting<'_>,
    now: Timestamp,
) -> rusqlite::Result<Option<Runtime>> {
    let (column, value): (&str, &dyn rusqlite::ToSql) = match &setting {
        Setting::Visibility(v) => ("visibility", v),
        Setting::CustomName(name) => ("custom_name", name),
        Setting::Capacity(max) => ("max_concurrent_tasks", max),
    };
    conn.prepare_cached(&format!(
        "UPDATE agent_runtime SET {column} = ?2, updated_at = ?3 WHERE id = ?1
         RETURNING {COLUMNS}"
    ))?
    .query_row(params![id, value, now], from_row)
    .optional()
}

pub fn set_machine_capacity(
    conn: &Connection,
    owner: UserId,
    daemon_id: &str,
    max: Option<i64>,
    now: Timestamp,
) -> rusqlite::Result<()> {
    match max {
        Some(max) => conn
            .prepare_cached(
                "INSERT INTO machine_limit (owner_id, daemon_id, max_concurrent_tasks, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (owner_id, daemon_id) DO UPDATE
                 SET max_concurrent_tasks = excluded.max_concurrent_tasks,
                     updated_at = excluded.updated_at",
            )?
            .execute(params![owner, daemon_id, max, now]),
        None => conn
            .prepare_cached("DELETE FROM machine_limit WHERE owner_id = ?1 AND daemon_id = ?2")?
            .execute(params![owner, daemon_id]),
    }
    .map(drop)
}

pub fn of_machine(
    conn: &Connection,
    workspace: WorkspaceId,
    daemon_id: &str,
) -> rusqlite::Result<Vec<Runtime>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM agent_runtime WHERE workspace_id = ?1 AND daemon_id = ?2
         ORDER BY id LIMIT 1000"
    ))?;
    let rows = stmt.query_map(params![workspace, daemon_id], from_row)?;
    rows.collect()
}

pub fn claim(
    conn: &Connection,
    id: RuntimeId,
    owner: UserId,
    now: Timestamp,
) -> rusqlite::Result<Option<Runtime>> {
    conn.prepare_cached(&format!(
        "UPDATE agent_runtime SET owner_id = ?2, updated_at = ?3
         WHERE id = ?1 AND owner_id IS NULL
         RETURNING {COLUMNS}"
    ))?
    .query_row(params![id, owner, now], from_row)
    .optional()
}

pub fn count_by_status(conn: &Connection) -> rusqlite::Result<Vec<(RuntimeStatus, i64)>> {
    let mut stmt =
        conn.prepare_cached("SELECT status, count(*) FROM agent_runtime GROUP BY status")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

pub fn get(conn: &Connection, id: RuntimeId) -> rusqlite::Result<Option<Runtime>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM agent_runtime WHERE id = ?1"
    ))?
    .query_row([id], from_row)
    .optional()
}

pub fn list(
    conn: &Connection,
    workspace: WorkspaceId,
    owner: Option<UserId>,
    after: Option<(Timestamp, RuntimeId)>,
    limit: usize,
) -> rusqlite::Result<Vec<Runtime>> {
    // '' sorts before every stored timestamp and id: the first page
    let (created_at, id) = after.map_or((String::new(), String::new()), |(c, id)| {
        (stored_time(c), id.to_string())
    });
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM agent_runtime
         WHERE workspace_id = ?1 AND (?2 IS NULL OR owner_id = ?2)
           AND (created_at, id) > (?3, ?4)
         ORDER BY created_at, id
         LIMIT ?5"
    ))?;
    let rows = stmt.query_map(
        params![workspace, owner, created_at, id, limit as i64],
        from_row,
    )?;
    rows.collect()
}

pub fn upsert(conn: &Connection, reg: &Registration) -> rusqlite::Result<Option<Runtime>> {
    let now = Timestamp::now();
    conn.prepare_cached(&format!(
        "INSERT INTO agent_runtime (id, workspace_id, daemon_id, name, runtime_mode, provider,
                 status, device_info, metadata, owner_id, last_seen_at, created_at, updated_at,
                 offline_reason)
             VALUES (?1, ?2, ?3, ?4, 'local', ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?10, ?11)
             ON CONFLICT (workspace_id, daemon_id, provider) DO UPDATE SET
                 name = excluded.name,
                 runtime_mode = excluded.runtime_mode,
                 status = excluded.status,
                 device_info = excluded.device_info,
                 metadata = excluded.metadata,
                 last_seen_at = excluded.last_seen_at,
                 updated_at = excluded.updated_at,
                 offline_reason = excluded.offline_reason
             WHERE agent_runtime.owner_id = excluded.owner_id
             RETURNING {COLUMNS}"
    ))?
    .query_row(
        params![
            RuntimeId::new(),
            reg.workspace_id,
            reg.daemon_id,
            reg.name,
            reg.provider,
            reg.status,
            reg.device_info,
            reg.metadata,
            reg.owner,
            now,
            reg.offline_reason,
        ],
        from_row,
    )
    .optional()
}

pub fn exists(
    conn: &Connection,
    workspace: WorkspaceId,
    daemon_id: &str,
    provider: &str,
) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM agent_runtime WHERE workspace_id = ?1 AND daemon_id = ?2 AND provider = ?3",
    )?
    .exists(params![workspace, daemon_id, provider])
}

pub fn daemon_owned_by_other(
    conn: &Connection,
    workspace: WorkspaceId,
    daemon_id: &str,
    owner: UserId,
) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM agent_runtime
         WHERE workspace_id = ?1 AND daemon_id = ?2 AND owner_id IS NOT ?3",
    )?
    .exists(params![workspace, daemon_id, owner])
}

pub fn count_in_workspace(conn: &Connection, workspace: WorkspaceId) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT runtime_count FROM workspace WHERE id = ?1")?
        .query_row([workspace], |r| r.get(0))
        .optional()
        .map(Option::unwrap_or_default)
}

pub fn migrate_agents(conn: &Connection, target: &Runtime) -> rusqlite::Result<usize> {
    let (Some(owner), Some(daemon_id)) = (target.owner_id, target.daemon_id.as_deref()) else {
        return Ok(0);
    };
    conn.prepare_cached(
        "UPDATE agent SET runtime_id = ?1, updated_at = ?7
         WHERE runtime_id IN (
             SELECT id FROM agent_runtime
             WHERE workspace_id = ?2 AND daemon_id >= ?5 AND daemon_id < ?6
               AND provider = ?3 AND +owner_id = ?4
               AND status = 'offline' AND id <> ?1)",
    )?
    .execute(params![
        target.id,
        target.workspace_id,
        target.provider,
        owner,
        format!("{daemon_id}-"),
        format!("{daemon_id}."),
        Timestamp::now()
    ])
}

pub fn fold_legacy(
    conn: &Connection,
    target: &Runtime,
    legacy: &[String],
) -> rusqlite::Result<Folded> {
    let mut folded = Folded::default();
    let Some(owner) = target.owner_id else {
        return Ok(folded);
    };
    // the (workspace, provider, lower(daemon_id)) index: one point read
    // per former id; `+owner_id` keeps the planner off the owner index
    let mut find = conn.prepare_cached(
        "SELECT id FROM agent_runtime
         WHERE workspace_id = ?1 AND provider = ?2 AND lower(daemon_id) = lower(?3)
           AND +owner_id = ?4 AND id <> ?5",
    )?;
    for daemon_id in legacy {
        let rows = find.query_map(
            params![
                target.workspace_id,
                target.provider,
                daemon_id,
                owner,
                target.id
            ],
            |r| r.get::<_, RuntimeId>(0),
        )?;
        for old in rows.collect::<rusqlite::Result<Vec<_>>>()? {
            if folded.runtimes.contains(&old) {
                continue;
            }
            let (agents, tasks) = fold_one(conn, old, target.id)?;
            folded.agents += agents;
            folded.tasks += tasks;
            folded.runtimes.push(old);
        }
    }
    Ok(folded)
}

/// Moves what hangs on runtime `old` to `new` and deletes `old`; returns
/// how many agents and open tasks moved. A day `new` already has a usage
/// report for keeps that report (reports are day totals, the newest wins).
fn fold_one(conn: &Connection, old: RuntimeId, new: RuntimeId) -> rusqlite::Result<(usize, usize)> {
    let now = Timestamp::now();
    let agents = conn
        .prepare_cached("UPDATE agent SET runtime_id = ?2, updated_at = ?3 WHERE runtime_id = ?1")?
        .execute(params![old, new, now])?;
    let tasks = conn
        .prepare_cached(
            "UPDATE agent_task_queue SET runtime_id = ?2
             WHERE runtime_id = ?1 AND status IN ('queued', 'dispatched', 'running')",
        )?
        .execute(params![old, new])?;
    conn.prepare_cached(
        "UPDATE OR IGNORE runtime_usage SET runtime_id = ?2, updated_at = ?3 WHERE runtime_id = ?1",
    )?
    .execute(params![old, new, now])?;
    // the usage its tasks reported adds to the new rows of the rollups no
    // foreign key deletes (saturating, like every rollup)
    for (table, columns, key) in crate::store::usage::RUNTIME_ROLLUPS {
        move_usage(conn, table, columns, *key, (old, new))?;
    }
    conn.prepare_cached("DELETE FROM agent_runtime WHERE id = ?1")?
        .execute([old])?;
    Ok((agents, tasks))
}

/// Adds `table`'s usage rows of runtime `old` to those of `new` and deletes
/// them: `columns` are its keys and other text columns, the first `key` of
/// them its primary key (`runtime_id` among them); the counts are
/// `QUARTER_COLUMNS`.
fn move_usage(
    conn: &Connection,
    table: &str,
    columns: &[&str],
    key: usize,
    (old, new): (RuntimeId, RuntimeId),
) -> rusqlite::Result<()> {
    let counts = crate::store::usage::QUARTER_COLUMNS;
    let selected: Vec<&str> = columns
        .iter()
        .map(|c| if *c == "runtime_id" { "?2" } else { c })
        .collect();
    let sets: Vec<String> = counts
        .iter()
        .map(|c| format!("{c} = min({c} + excluded.{c}, 9223372036854775807)"))
        .collect();
    conn.prepare_cached(&format!(
        "INSERT INTO {table} ({columns}, {counts})
         SELECT {selected}, {counts} FROM {table} WHERE runtime_id = ?1 AND true
         ON CONFLICT ({key}) DO UPDATE SET {sets}",
        columns = columns.join(", "),
        counts = counts.join(", "),
        selected = selected.join(", "),
        key = columns[..key].join(", "),
        sets = sets.join(", "),
    ))?
    .execute(params![old, new])?;
    conn.prepare_cached(&format!("DELETE FROM {table} WHERE runtime_id = ?1"))?
        .execute([old])?;
    Ok(())
}

pub fn heartbeat(conn: &Connection, id: RuntimeId) -> rusqlite::Result<bool> {
    let now = Timestamp::now();
    let changed = conn
        .prepare_cached(
            "UPDATE agent_runtime
         SET status = 'online', last_seen_at = ?2, updated_at = ?2, offline_reason = NULL
         WHERE id = ?1",
        )?
        .execute(params![id, now])?;
    Ok(changed > 0)
}

pub fn set_offline(conn: &Connection, id: RuntimeId, reason: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE agent_runtime SET status = 'offline', offline_reason = ?3, updated_at = ?2
         WHERE id = ?1",
    )?
    .execute(params![id, Timestamp::now(), reason])?;
    Ok(())
}

pub fn count_active_agents(conn: &Connection, id: RuntimeId) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM agent WHERE runtime_id = ?1 AND archived_at IS NULL")?
        .query_row([id], |r| r.get(0))
}

/// The one writer already orders writes.
pub fn lock(_conn: &Connection, _id: RuntimeId) -> rusqlite::Result<()> {
    Ok(())
}

pub fn unbind_agents(conn: &Connection, id: RuntimeId, now: Timestamp) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "UPDATE agent SET runtime_id = NULL, updated_at = ?2 WHERE runtime_id = ?1",
    )?
    .execute(params![id, now])
}

pub fn active_agents(
    conn: &Connection,
    id: RuntimeId,
    limit: i64,
) -> rusqlite::Result<Vec<(crate::domain::AgentId, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name FROM agent WHERE runtime_id = ?1 AND archived_at IS NULL
         ORDER BY created_at, id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![id, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

pub fn delete(conn: &Connection, id: RuntimeId) -> Result<(), Error> {
    let in_use = || {
        Error::conflict(
            "cannot delete runtime: it has active agents bound to it. Archive or reassign the agents first.",
        )
    };
    if count_active_agents(conn, id)? > 0 {
        return Err(in_use());
    }
    conn.prepare_cached("DELETE FROM agent WHERE runtime_id = ?1 AND archived_at IS NOT NULL")?
        .execute([id])?;
    // the schema's ON DELETE RESTRICT refuses the delete if an agent was
    // bound to it since the count: the same refusal
    match conn
        .prepare_cached("DELETE FROM agent_runtime WHERE id = ?1")?
        .execute([id])
    {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
        {
            Err(in_use())
        }
        other => other.map(drop).map_err(Error::from),
    }
}

pub fn touch_seen(conn: &Connection, id: RuntimeId, at: Timestamp) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE agent_runtime SET last_seen_at = ?2, updated_at = ?2
         WHERE id = ?1 AND status = 'online' AND (last_seen_at IS NULL OR last_seen_at < ?2)",
    )?
    .execute(params![id, at])?;
    Ok(())
}
