//! `agent` rows.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::stored_time;
use serde_json::Value;

use crate::domain::{AgentId, AgentStatus, Timestamp, UserId, WorkspaceId};
use crate::store::agents::*;

const COLUMNS: &str = "id, workspace_id, runtime_id, name, description, instructions, avatar_url, \
     runtime_mode, runtime_config, visibility, status, max_concurrent_tasks, owner_id, \
     created_at, updated_at, archived_at, archived_by, max_attempts, fallback_after_secs, \
     quota_failed_at, (SELECT json_group_array(f.runtime_id) FROM \
      (SELECT runtime_id FROM agent_fallback WHERE agent_id = agent.id ORDER BY position) f)";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Agent> {
    let config: String = row.get(8)?;
    Ok(Agent {
        id: row.get(0)?,
        workspace_id: row.get(1)?,
        runtime_id: row.get(2)?,
        name: row.get(3)?,
        description: row.get(4)?,
        instructions: row.get(5)?,
        avatar_url: row.get(6)?,
        runtime_mode: row.get(7)?,
        runtime_config: serde_json::from_str(&config).unwrap_or(Value::Null),
        visibility: row.get(9)?,
        status: row.get(10)?,
        max_concurrent_tasks: row.get(11)?,
        owner_id: row.get(12)?,
        skills: Vec::new(),
        created_at: row.get(13)?,
        updated_at: row.get(14)?,
        archived_at: row.get(15)?,
        archived_by: row.get(16)?,
        max_attempts: row.get(17)?,
        fallback_after_secs: row.get(18)?,
        quota_failed_at: row.get(19)?,
        fallback_runtime_ids: {
            let listed: String = row.get(20)?;
            serde_json::from_str(&listed).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    20,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?
        },
    })
}

/// Nothing to take: a SQLite write transaction holds the whole file.
pub fn lock(_conn: &Connection, _id: AgentId) -> rusqlite::Result<()> {
    Ok(())
}

/// `_lock` asks for nothing here: the one writer already orders writes.
pub fn get(conn: &Connection, id: AgentId, _lock: bool) -> rusqlite::Result<Option<Agent>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM agent WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()
}

pub fn list(
    conn: &Connection,
    filter: Filter,
    after: Option<(Timestamp, AgentId)>,
    limit: usize,
) -> rusqlite::Result<Vec<Agent>> {
    // '' sorts before every stored timestamp and id: the first page
    let (created_at, id) = after.map_or((String::new(), String::new()), |(c, id)| {
        (stored_time(c), id.to_string())
    });
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM agent
         WHERE workspace_id = ?1
           AND (?3 OR visibility = 'workspace' OR owner_id = ?2)
           AND (?4 OR archived_at IS NULL)
           AND (created_at, id) > (?5, ?6)
         ORDER BY created_at, id
         LIMIT ?7"
    ))?;
    let rows = stmt.query_map(
        params![
            filter.workspace,
            filter.viewer,
            filter.see_private,
            filter.include_archived,
            created_at,
            id,
            limit as i64
        ],
        from_row,
    )?;
    rows.collect()
}

pub fn insert(
    conn: &Connection,
    workspace: WorkspaceId,
    owner: UserId,
    fields: &AgentFields,
) -> rusqlite::Result<Agent> {
    let id = AgentId::new();
    let now = Timestamp::now();
    conn.prepare_cached(
        "INSERT INTO agent (id, workspace_id, runtime_id, name, description, instructions,
             avatar_url, runtime_mode, runtime_config, visibility, status, max_concurrent_tasks,
             owner_id, created_at, updated_at, max_attempts, fallback_after_secs)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15, ?16)",
    )?
    .execute(params![
        id,
        workspace,
        fields.runtime_id,
        fields.name,
        fields.description,
        fields.instructions,
        fields.avatar_url,
        fields.runtime_mode,
        fields.runtime_config,
        fields.visibility,
        fields.status,
        fields.max_concurrent_tasks,
        owner,
        now,
        fields.max_attempts,
        fields.fallback_after_secs
    ])?;
    get(conn, id, false)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

pub fn update(conn: &Connection, id: AgentId, fields: &AgentFields) -> rusqlite::Result<Agent> {
    conn.prepare_cached(
        "UPDATE agent SET runtime_id = ?2, name = ?3, description = ?4, instructions = ?5,
             avatar_url = ?6, runtime_mode = ?7, runtime_config = ?8, visibility = ?9,
             status = ?10, max_concurrent_tasks = ?11, updated_at = ?12, max_attempts = ?13,
             fallback_after_secs = ?14
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        fields.runtime_id,
        fields.name,
        fields.description,
        fields.instructions,
        fields.avatar_url,
        fields.runtime_mode,
        fields.runtime_config,
        fields.visibility,
        fields.status,
        fields.max_concurrent_tasks,
        Timestamp::now(),
        fields.max_attempts,
        fields.fallback_after_secs
    ])?;
    get(conn, id, false)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

pub fn set_fallbacks(
    conn: &Connection,
    id: AgentId,
    runtimes: &[crate::domain::RuntimeId],
) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM agent_fallback WHERE agent_id = ?1")?
        .execute([id])?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO agent_fallback (agent_id, runtime_id, position) VALUES (?1, ?2, ?3)",
    )?;
    for (position, runtime) in runtimes.iter().enumerate() {
        insert.execute(params![id, runtime, position as i64])?;
    }
    Ok(())
}

pub fn mark_quota_failed(conn: &Connection, id: AgentId, at: Timestamp) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE agent SET quota_failed_at = ?2 WHERE id = ?1")?
        .execute(params![id, at])?;
    Ok(())
}

pub fn set_archived(
    conn: &Connection,
    id: AgentId,
    by: Option<UserId>,
) -> rusqlite::Result<Option<Agent>> {
    let changed = conn
        .prepare_cached(
            "UPDATE agent SET archived_at = CASE WHEN ?2 IS NULL THEN NULL ELSE ?3 END,
             archived_by = ?2, updated_at = ?3
         WHERE id = ?1 AND (archived_at IS NULL) = (?2 IS NOT NULL)",
        )?
        .execute(params![id, by, Timestamp::now()])?;
    if changed == 0 {
        return Ok(None);
    }
    get(conn, id, false)
}

pub fn reconcile_status(conn: &Connection, id: AgentId) -> rusqlite::Result<Option<AgentStatus>> {
    let status: Option<AgentStatus> = conn
        .prepare_cached(
            "UPDATE agent SET status = new.status, updated_at = ?2
             FROM (SELECT CASE WHEN EXISTS (
                       SELECT 1 FROM agent_task_queue
                       WHERE agent_id = ?1 AND status IN ('dispatched', 'running'))
                   THEN 'working' ELSE 'idle' END AS status) AS new
             WHERE agent.id = ?1 AND agent.status <> new.status
             RETURNING agent.status",
        )?
        .query_row(params![id, Timestamp::now()], |r| r.get(0))
        .optional()?;
    Ok(status)
}

pub fn directory(
    conn: &Connection,
    workspace: WorkspaceId,
) -> rusqlite::Result<Vec<(AgentId, crate::domain::Visibility, Option<UserId>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, visibility, owner_id FROM agent WHERE workspace_id = ?1 LIMIT ?2",
    )?;
    let rows = stmt.query_map(
        params![workspace, crate::store::agents::MAX_DIRECTORY],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    rows.collect()
}
