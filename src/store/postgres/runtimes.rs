//! `agent_runtime` rows: registration upserts, heartbeats, listing, delete.

use postgres::error::SqlState;
use postgres::Row;
use serde_json::Value;

use super::Client;

use crate::domain::{RuntimeId, RuntimeStatus, Timestamp, UserId, WorkspaceId};
use crate::store::runtimes::*;
use crate::store::Error;

const COLUMNS: &str = "id, workspace_id, daemon_id, name, runtime_mode, provider, status, \
     device_info, metadata, owner_id, last_seen_at, created_at, updated_at, offline_reason, \
     visibility, custom_name, offline_since, max_concurrent_tasks, \
     (SELECT m.max_concurrent_tasks FROM machine_limit m \
      WHERE m.owner_id = agent_runtime.owner_id AND m.daemon_id = agent_runtime.daemon_id)";

fn from_row(row: &Row) -> Result<Runtime, postgres::Error> {
    let metadata = metadata_object(Some(row.try_get::<_, Value>(8)?));
    Ok(Runtime {
        id: row.try_get(0)?,
        workspace_id: row.try_get(1)?,
        daemon_id: row.try_get(2)?,
        name: row.try_get(3)?,
        runtime_mode: row.try_get(4)?,
        provider: row.try_get(5)?,
        status: row.try_get(6)?,
        device_info: row.try_get(7)?,
        metadata,
        owner_id: row.try_get(9)?,
        last_seen_at: row.try_get(10)?,
        created_at: row.try_get(11)?,
        updated_at: row.try_get(12)?,
        offline_reason: row.try_get::<_, Option<Value>>(13)?,
        visibility: row.try_get(14)?,
        custom_name: row.try_get(15)?,
        offline_since: row.try_get(16)?,
        max_concurrent_tasks: row.try_get(17)?,
        machine_max_concurrent_tasks: row.try_get(18)?,
    })
}

pub fn set(
    conn: &mut Client,
    id: RuntimeId,
    setting: Setting<'_>,
    now: Timestamp,
) -> Result<Option<Runtime>, postgres::Error> {
    let (column, value): (&str, &(dyn postgres::types::ToSql + Sync)) = match &setting {
        Setting::Visibility(v) => ("visibility", v),
        Setting::CustomName(name) => ("custom_name", name),
        Setting::Capacity(max) => ("max_concurrent_tasks", max),
    };
    conn.query_opt(
        &format!(
            "UPDATE agent_runtime SET {column} = $2, updated_at = $3 WHERE id = $1
             RETURNING {COLUMNS}"
        ),
        &[&id, value, &now],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub fn set_machine_capacity(
    conn: &mut Client,
    owner: UserId,
    daemon_id: &str,
    max: Option<i64>,
    now: Timestamp,
) -> Result<(), postgres::Error> {
    match max {
        Some(max) => conn.execute(
            "INSERT INTO machine_limit (owner_id, daemon_id, max_concurrent_tasks, updated_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (owner_id, daemon_id) DO UPDATE
             SET max_concurrent_tasks = excluded.max_concurrent_tasks,
                 updated_at = excluded.updated_at",
            &[&owner, &daemon_id, &max, &now],
        ),
        None => conn.execute(
            "DELETE FROM machine_limit WHERE owner_id = $1 AND daemon_id = $2",
            &[&owner, &daemon_id],
        ),
    }
    .map(drop)
}

pub fn of_machine(
    conn: &mut Client,
    workspace: WorkspaceId,
    daemon_id: &str,
) -> Result<Vec<Runtime>, postgres::Error> {
    conn.query(
        &format!(
            "SELECT {COLUMNS} FROM agent_runtime WHERE workspace_id = $1 AND daemon_id = $2
             ORDER BY id LIMIT 1000"
        ),
        &[&workspace, &daemon_id],
    )?
    .iter()
    .map(from_row)
    .collect()
}

pub fn claim(
    conn: &mut Client,
    id: RuntimeId,
    owner: UserId,
    now: Timestamp,
) -> Result<Option<Runtime>, postgres::Error> {
    conn.query_opt(
        &format!(
            "UPDATE agent_runtime SET owner_id = $2, updated_at = $3
             WHERE id = $1 AND owner_id IS NULL
             RETURNING {COLUMNS}"
        ),
        &[&id, &owner, &now],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub fn count_by_status(conn: &mut Client) -> Result<Vec<(RuntimeStatus, i64)>, postgres::Error> {
    conn.query(
        "SELECT status, count(*) FROM agent_runtime GROUP BY status",
        &[],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

pub fn get(conn: &mut Client, id: RuntimeId) -> Result<Option<Runtime>, postgres::Error> {
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM agent_runtime WHERE id = $1"),
        &[&id],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub fn list(
    conn: &mut Client,
    workspace: WorkspaceId,
    owner: Option<UserId>,
    after: Option<(Timestamp, RuntimeId)>,
    limit: usize,
) -> Result<Vec<Runtime>, postgres::Error> {
    // one statement per shape: a cached statement's generic plan cannot
    // use the page index for "no cursor, or after the cursor"
    let rows = match after {
        Some((created_at, id)) => conn.query(
            &format!(
                "SELECT {COLUMNS} FROM agent_runtime
                 WHERE workspace_id = $1 AND ($2::uuid IS NULL OR owner_id = $2)
                   AND (created_at, id) > ($3, $4)
                 ORDER BY created_at, id
                 LIMIT $5"
            ),
            &[&workspace, &owner, &created_at, &id, &(limit as i64)],
        )?,
        None => conn.query(
            &format!(
                "SELECT {COLUMNS} FROM agent_runtime
                 WHERE workspace_id = $1 AND ($2::uuid IS NULL OR owner_id = $2)
                 ORDER BY created_at, id
                 LIMIT $3"
            ),
            &[&workspace, &owner, &(limit as i64)],
        )?,
    };
    rows.iter().map(from_row).collect()
}

pub fn upsert(conn: &mut Client, reg: &Registration) -> Result<Option<Runtime>, postgres::Error> {
    let now = Timestamp::now();
    conn.query_opt(
        &format!(
            "INSERT INTO agent_runtime (id, workspace_id, daemon_id, name, runtime_mode, provider,
                     status, device_info, metadata, owner_id, last_seen_at, created_at, updated_at,
                     offline_reason)
                 VALUES ($1, $2, $3, $4, 'local', $5, $6, $7, $8::text::jsonb, $9, $10, $10, $10,
                         $11::text::jsonb)
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
        ),
        &[
            &RuntimeId::new(),
            &reg.workspace_id,
            &reg.daemon_id,
            &reg.name,
            &reg.provider,
            &reg.status,
            &reg.device_info,
            &reg.metadata,
            &reg.owner,
            &now,
            &reg.offline_reason,
        ],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub fn exists(
    conn: &mut Client,
    workspace: WorkspaceId,
    daemon_id: &str,
    provider: &str,
) -> Result<bool, postgres::Error> {
    Ok(conn
        .query_opt(
            "SELECT 1 FROM agent_runtime
             WHERE workspace_id = $1 AND daemon_id = $2 AND provider = $3",
            &[&workspace, &daemon_id, &provider],
        )?
        .is_some())
}

pub fn daemon_owned_by_other(
    conn: &mut Client,
    workspace: WorkspaceId,
    daemon_id: &str,
    owner: UserId,
) -> Result<bool, postgres::Error> {
    conn.query_one(
        "SELECT EXISTS (SELECT 1 FROM agent_runtime
                        WHERE workspace_id = $1 AND daemon_id = $2
                          AND owner_id IS DISTINCT FROM $3)",
        &[&workspace, &daemon_id, &owner],
    )?
    .try_get(0)
}

pub fn count_in_workspace(
    conn: &mut Client,
    workspace: WorkspaceId,
) -> Result<i64, postgres::Error> {
    conn.query_opt(
        "SELECT runtime_count FROM workspace WHERE id = $1",
        &[&workspace],
    )?
    .map_or(Ok(0), |r| r.try_get(0))
}

pub fn migrate_agents(conn: &mut Client, target: &Runtime) -> Result<usize, postgres::Error> {
    let (Some(owner), Some(daemon_id)) = (target.owner_id, target.daemon_id.as_deref()) else {
        return Ok(0);
    };
    let moved = conn.execute(
        "UPDATE agent SET runtime_id = $1, updated_at = $7
         WHERE runtime_id IN (
             SELECT id FROM agent_runtime
             WHERE workspace_id = $2 AND daemon_id >= $5 AND daemon_id < $6
               AND provider = $3 AND owner_id = $4
               AND status = 'offline' AND id <> $1)",
        &[
            &target.id,
            &target.workspace_id,
            &target.provider,
            &owner,
            &format!("{daemon_id}-"),
            &format!("{daemon_id}."),
            &Timestamp::now(),
        ],
    )?;
    Ok(moved as usize)
}

pub fn fold_legacy(
    conn: &mut Client,
    target: &Runtime,
    legacy: &[String],
) -> Result<Folded, postgres::Error> {
    let mut folded = Folded::default();
    let Some(owner) = target.owner_id else {
        return Ok(folded);
    };
    // the (workspace, provider, lower(daemon_id)) index: one point read
    // per former id. `lower` of the parameter folds as the column's "C"
    // collation does (ASCII only, as SQLite's lower), whatever the
    // database's default collation.
    let find = r#"SELECT id FROM agent_runtime
           WHERE workspace_id = $1 AND provider = $2
             AND lower(daemon_id) = lower($3::text COLLATE "C")
             AND owner_id = $4 AND id <> $5"#;
    for daemon_id in legacy {
        let rows = conn.query(
            find,
            &[
                &target.workspace_id,
                &target.provider,
                daemon_id,
                &owner,
                &target.id,
            ],
        )?;
        let olds = rows
            .iter()
            .map(|r| r.try_get::<_, RuntimeId>(0))
            .collect::<Result<Vec<_>, _>>()?;
        for old in olds {
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
///
/// SQLite's `UPDATE OR IGNORE` of the usage reports is an update that
/// leaves out the rows whose key `new` already has (they go with `old`'s
/// row, by the schema's ON DELETE CASCADE).
fn fold_one(
    conn: &mut Client,
    old: RuntimeId,
    new: RuntimeId,
) -> Result<(usize, usize), postgres::Error> {
    let now = Timestamp::now();
    let agents = conn.execute(
        "UPDATE agent SET runtime_id = $2, updated_at = $3 WHERE runtime_id = $1",
        &[&old, &new, &now],
    )?;
    let tasks = conn.execute(
        "UPDATE agent_task_queue SET runtime_id = $2
         WHERE runtime_id = $1 AND status IN ('queued', 'dispatched', 'running')",
        &[&old, &new],
    )?;
    conn.execute(
        "UPDATE runtime_usage o SET runtime_id = $2, updated_at = $3
         WHERE o.runtime_id = $1
           AND NOT EXISTS (SELECT 1 FROM runtime_usage n
                           WHERE n.runtime_id = $2 AND n.date = o.date
                             AND n.provider = o.provider AND n.model = o.model)",
        &[&old, &new, &now],
    )?;
    // the usage its tasks reported adds to the new rows of the rollups no
    // foreign key deletes (saturating, like every rollup)
    for (table, columns, key) in crate::store::usage::RUNTIME_ROLLUPS {
        move_usage(conn, table, columns, *key, (old, new))?;
    }
    conn.execute("DELETE FROM agent_runtime WHERE id = $1", &[&old])?;
    Ok((agents as usize, tasks as usize))
}

/// Adds `table`'s usage rows of runtime `old` to those of `new` and deletes
/// them: `columns` are its keys and other columns, the first `key` of them
/// its primary key (`runtime_id` among them); the counts are
/// `QUARTER_COLUMNS`, summed in `numeric` and clamped at 2^63-1.
fn move_usage(
    conn: &mut Client,
    table: &str,
    columns: &[&str],
    key: usize,
    (old, new): (RuntimeId, RuntimeId),
) -> Result<(), postgres::Error> {
    let counts = crate::store::usage::QUARTER_COLUMNS;
    let selected: Vec<&str> = columns
        .iter()
        .map(|c| if *c == "runtime_id" { "$2" } else { c })
        .collect();
    let sets: Vec<String> = counts
        .iter()
        .map(|c| format!("{c} = LEAST(t.{c}::numeric + excluded.{c}, 9223372036854775807)::bigint"))
        .collect();
    conn.execute(
        &format!(
            "INSERT INTO {table} AS t ({columns}, {counts})
             SELECT {selected}, {counts} FROM {table} WHERE runtime_id = $1
             ON CONFLICT ({key}) DO UPDATE SET {sets}",
            columns = columns.join(", "),
            counts = counts.join(", "),
            selected = selected.join(", "),
            key = columns[..key].join(", "),
            sets = sets.join(", "),
        ),
        &[&old, &new],
    )?;
    conn.execute(
        &format!("DELETE FROM {table} WHERE runtime_id = $1"),
        &[&old],
    )?;
    Ok(())
}

pub fn heartbeat(conn: &mut Client, id: RuntimeId) -> Result<bool, postgres::Error> {
    let now = Timestamp::now();
    let changed = conn.execute(
        "UPDATE agent_runtime
         SET status = 'online', last_seen_at = $2, updated_at = $2, offline_reason = NULL
         WHERE id = $1",
        &[&id, &now],
    )?;
    Ok(changed > 0)
}

pub fn set_offline(conn: &mut Client, id: RuntimeId, reason: &str) -> Result<(), postgres::Error> {
    conn.execute(
        "UPDATE agent_runtime
         SET status = 'offline', offline_reason = $3::text::jsonb, updated_at = $2
         WHERE id = $1",
        &[&id, &Timestamp::now(), &reason],
    )?;
    Ok(())
}

pub fn count_active_agents(conn: &mut Client, id: RuntimeId) -> Result<i64, postgres::Error> {
    conn.query_one(
        "SELECT count(*) FROM agent WHERE runtime_id = $1 AND archived_at IS NULL",
        &[&id],
    )?
    .try_get(0)
}

/// The schema's ON DELETE RESTRICT (checked against the latest committed
/// rows, after waiting for a concurrent insert of an agent bound to the
/// runtime) refuses the delete if an agent was bound to it since the
/// count: the same refusal. The failed statement aborts the transaction,
/// which the caller rolls back with the error.
pub fn lock(conn: &mut Client, id: RuntimeId) -> Result<(), postgres::Error> {
    conn.execute(
        "SELECT 1 FROM agent_runtime WHERE id = $1 FOR UPDATE",
        &[&id],
    )?;
    Ok(())
}

pub fn unbind_agents(
    conn: &mut Client,
    id: RuntimeId,
    now: Timestamp,
) -> Result<usize, postgres::Error> {
    let n = conn.execute(
        "UPDATE agent SET runtime_id = NULL, updated_at = $2 WHERE runtime_id = $1",
        &[&id, &now],
    )?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

pub fn active_agents(
    conn: &mut Client,
    id: RuntimeId,
    limit: i64,
) -> Result<Vec<(crate::domain::AgentId, String)>, postgres::Error> {
    conn.query(
        "SELECT id, name FROM agent WHERE runtime_id = $1 AND archived_at IS NULL
         ORDER BY created_at, id LIMIT $2",
        &[&id, &limit],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

pub fn delete(conn: &mut Client, id: RuntimeId) -> Result<(), Error> {
    let in_use = || {
        Error::conflict(
            "cannot delete runtime: it has active agents bound to it. Archive or reassign the agents first.",
        )
    };
    if count_active_agents(conn, id)? > 0 {
        return Err(in_use());
    }
    conn.execute(
        "DELETE FROM agent WHERE runtime_id = $1 AND archived_at IS NOT NULL",
        &[&id],
    )?;
    match conn.execute("DELETE FROM agent_runtime WHERE id = $1", &[&id]) {
        Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => Err(in_use()),
        other => other.map(drop).map_err(Error::from),
    }
}

pub fn touch_seen(conn: &mut Client, id: RuntimeId, at: Timestamp) -> Result<(), postgres::Error> {
    conn.execute(
        "UPDATE agent_runtime SET last_seen_at = $2, updated_at = $2
         WHERE id = $1 AND status = 'online' AND (last_seen_at IS NULL OR last_seen_at < $2)",
        &[&id, &at],
    )?;
    Ok(())
}
