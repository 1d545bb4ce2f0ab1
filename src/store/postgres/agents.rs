//! `agent` rows.

use postgres::Row;

use super::Client;

use crate::domain::{AgentId, AgentStatus, Timestamp, UserId, WorkspaceId};
use crate::store::agents::*;
use crate::store::Error;

const COLUMNS: &str = "id, workspace_id, runtime_id, name, description, instructions, avatar_url, \
     runtime_mode, runtime_config, visibility, status, max_concurrent_tasks, owner_id, \
     created_at, updated_at, archived_at, archived_by, max_attempts, fallback_after_secs, \
     quota_failed_at, ARRAY(SELECT f.runtime_id FROM agent_fallback f \
      WHERE f.agent_id = agent.id ORDER BY f.position)";

fn from_row(row: &Row) -> Result<Agent, postgres::Error> {
    Ok(Agent {
        id: row.try_get(0)?,
        workspace_id: row.try_get(1)?,
        runtime_id: row.try_get(2)?,
        name: row.try_get(3)?,
        description: row.try_get(4)?,
        instructions: row.try_get(5)?,
        avatar_url: row.try_get(6)?,
        runtime_mode: row.try_get(7)?,
        runtime_config: row.try_get::<_, serde_json::Value>(8)?,
        visibility: row.try_get(9)?,
        status: row.try_get(10)?,
        max_concurrent_tasks: row.try_get(11)?,
        owner_id: row.try_get(12)?,
        skills: Vec::new(),
        created_at: row.try_get(13)?,
        updated_at: row.try_get(14)?,
        archived_at: row.try_get(15)?,
        archived_by: row.try_get(16)?,
        max_attempts: row.try_get(17)?,
        fallback_after_secs: row.try_get(18)?,
        quota_failed_at: row.try_get(19)?,
        fallback_runtime_ids: row.try_get(20)?,
    })
}

/// Takes the agent's row lock (`FOR UPDATE`) until the transaction ends:
/// the writes that check and change an agent's work (queueing, archiving,
/// claiming) take turns on it.
pub fn lock(conn: &mut Client, id: AgentId) -> Result<(), postgres::Error> {
    conn.execute("SELECT 1 FROM agent WHERE id = $1 FOR UPDATE", &[&id])?;
    Ok(())
}

/// With `lock` (inside a write), `FOR UPDATE`.
pub fn get(conn: &mut Client, id: AgentId, lock: bool) -> Result<Option<Agent>, postgres::Error> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM agent WHERE id = $1{lock}"),
        &[&id],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub fn list(
    conn: &mut Client,
    filter: Filter,
    after: Option<(Timestamp, AgentId)>,
    limit: usize,
) -> Result<Vec<Agent>, postgres::Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let visible = "workspace_id = $1
           AND ($3 OR visibility = 'workspace' OR owner_id = $2)
           AND ($4 OR archived_at IS NULL)";
    let rows = match after {
        None => conn.query(
            &format!(
                "SELECT {COLUMNS} FROM agent
                 WHERE {visible}
                 ORDER BY created_at, id
                 LIMIT $5"
            ),
            &[
                &filter.workspace,
                &filter.viewer,
                &filter.see_private,
                &filter.include_archived,
                &limit,
            ],
        )?,
        Some((created_at, id)) => conn.query(
            &format!(
                "SELECT {COLUMNS} FROM agent
                 WHERE {visible}
                   AND (created_at, id) > ($5, $6)
                 ORDER BY created_at, id
                 LIMIT $7"
            ),
            &[
                &filter.workspace,
                &filter.viewer,
                &filter.see_private,
                &filter.include_archived,
                &created_at,
                &id,
                &limit,
            ],
        )?,
    };
    rows.iter().map(from_row).collect()
}

/// One statement (`INSERT … RETURNING`) where SQLite inserts, then reads.
pub fn insert(
    conn: &mut Client,
    workspace: WorkspaceId,
    owner: UserId,
    fields: &AgentFields,
) -> Result<Agent, Error> {
    let now = Timestamp::now();
    let row = conn
        .query_opt(
            &format!(
                "INSERT INTO agent (id, workspace_id, runtime_id, name, description, instructions,
                     avatar_url, runtime_mode, runtime_config, visibility, status,
                     max_concurrent_tasks, owner_id, created_at, updated_at, max_attempts,
                     fallback_after_secs)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10, $11, $12, $13,
                         $14, $14, $15, $16)
                 RETURNING {COLUMNS}"
            ),
            &[
                &AgentId::new(),
                &workspace,
                &fields.runtime_id,
                &fields.name,
                &fields.description,
                &fields.instructions,
                &fields.avatar_url,
                &fields.runtime_mode,
                &fields.runtime_config,
                &fields.visibility,
                &fields.status,
                &fields.max_concurrent_tasks,
                &owner,
                &now,
                &fields.max_attempts,
                &fields.fallback_after_secs,
            ],
        )?
        .ok_or_else(|| Error::internal("database: the inserted agent was not returned"))?;
    Ok(from_row(&row)?)
}

/// One statement (`UPDATE … RETURNING`); no such agent is an internal
/// error, as SQLite's read-back reports it.
pub fn update(conn: &mut Client, id: AgentId, fields: &AgentFields) -> Result<Agent, Error> {
    let row = conn
        .query_opt(
            &format!(
                "UPDATE agent SET runtime_id = $2, name = $3, description = $4,
                     instructions = $5, avatar_url = $6, runtime_mode = $7,
                     runtime_config = $8::text::jsonb, visibility = $9, status = $10,
                     max_concurrent_tasks = $11, updated_at = $12, max_attempts = $13,
                     fallback_after_secs = $14
                 WHERE id = $1
                 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &fields.runtime_id,
                &fields.name,
                &fields.description,
                &fields.instructions,
                &fields.avatar_url,
                &fields.runtime_mode,
                &fields.runtime_config,
                &fields.visibility,
                &fields.status,
                &fields.max_concurrent_tasks,
                &Timestamp::now(),
                &fields.max_attempts,
                &fields.fallback_after_secs,
            ],
        )?
        .ok_or_else(|| Error::internal("database: query returned no rows (agent update)"))?;
    Ok(from_row(&row)?)
}

pub fn set_fallbacks(
    conn: &mut Client,
    id: AgentId,
    runtimes: &[crate::domain::RuntimeId],
) -> Result<(), postgres::Error> {
    conn.execute("DELETE FROM agent_fallback WHERE agent_id = $1", &[&id])?;
    for (position, runtime) in runtimes.iter().enumerate() {
        conn.execute(
            "INSERT INTO agent_fallback (agent_id, runtime_id, position) VALUES ($1, $2, $3)",
            &[&id, runtime, &(position as i64)],
        )?;
    }
    Ok(())
}

pub fn mark_quota_failed(
    conn: &mut Client,
    id: AgentId,
    at: Timestamp,
) -> Result<(), postgres::Error> {
    conn.execute(
        "UPDATE agent SET quota_failed_at = $2 WHERE id = $1",
        &[&id, &at],
    )?;
    Ok(())
}

pub fn set_archived(
    conn: &mut Client,
    id: AgentId,
    by: Option<UserId>,
) -> Result<Option<Agent>, postgres::Error> {
    conn.query_opt(
        &format!(
            "UPDATE agent
             SET archived_at = CASE WHEN $2::uuid IS NULL THEN NULL ELSE $3::timestamptz END,
                 archived_by = $2::uuid, updated_at = $3::timestamptz
             WHERE id = $1 AND (archived_at IS NULL) = ($2::uuid IS NOT NULL)
             RETURNING {COLUMNS}"
        ),
        &[&id, &by, &Timestamp::now()],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Takes the agent's row lock first, then decides in a statement of its
/// own, whose snapshot is taken once the lock is held. Without it, two
/// transactions ending the agent's last two busy tasks would each still
/// see the other's as busy and leave the agent `working`; with it they
/// take turns and the second one sees the first one's end. (A claim holds
/// the lock already.)
pub fn reconcile_status(
    conn: &mut Client,
    id: AgentId,
) -> Result<Option<AgentStatus>, postgres::Error> {
    lock(conn, id)?;
    conn.query_opt(
        "UPDATE agent SET status = new.status, updated_at = $2
         FROM (SELECT CASE WHEN EXISTS (
                   SELECT 1 FROM agent_task_queue
                   WHERE agent_id = $1 AND status IN ('dispatched', 'running'))
               THEN 'working' ELSE 'idle' END AS status) AS new
         WHERE agent.id = $1 AND agent.status <> new.status
         RETURNING agent.status",
        &[&id, &Timestamp::now()],
    )?
    .map(|r| r.try_get(0))
    .transpose()
}

pub fn directory(
    conn: &mut Client,
    workspace: WorkspaceId,
) -> Result<Vec<(AgentId, crate::domain::Visibility, Option<UserId>)>, postgres::Error> {
    conn.query(
        "SELECT id, visibility, owner_id FROM agent WHERE workspace_id = $1 LIMIT $2",
        &[&workspace, &crate::store::agents::MAX_DIRECTORY],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
    .collect()
}
