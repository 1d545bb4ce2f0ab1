//! `agent_task_queue` rows: queueing, the atomic claim, state transitions
//! and the hourly activity of a runtime.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use serde_json::Value;

use crate::db::{api_time, now};
use crate::domain::Id;

#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub id: Id,
    pub workspace_id: Id,
    pub agent_id: Option<Id>,
    pub runtime_id: Option<Id>,
    pub issue_id: Option<String>,
    pub status: String,
    pub priority: i64,
    pub prompt: String,
    pub dispatched_at: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub result: Option<Value>,
    pub error: Option<String>,
    /// Who queued it, while they exist.
    pub created_by: Option<Id>,
    pub created_at: String,
}

const COLUMNS: &str =
    "id, workspace_id, agent_id, runtime_id, issue_id, status, priority, prompt, \
     dispatched_at, started_at, completed_at, result, error, created_at, created_by";

fn opt_time(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<String>> {
    Ok(row.get::<_, Option<String>>(idx)?.as_deref().map(api_time))
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Task> {
    let result: Option<String> = row.get(11)?;
    Ok(Task {
        id: row.get(0)?,
        workspace_id: row.get(1)?,
        agent_id: row.get(2)?,
        runtime_id: row.get(3)?,
        issue_id: row.get(4)?,
        status: row.get(5)?,
        priority: row.get(6)?,
        prompt: row.get(7)?,
        dispatched_at: opt_time(row, 8)?,
        started_at: opt_time(row, 9)?,
        completed_at: opt_time(row, 10)?,
        result: result.and_then(|r| serde_json::from_str(&r).ok()),
        error: row.get(12)?,
        created_at: api_time(&row.get::<_, String>(13)?),
        created_by: row.get(14)?,
    })
}

pub fn get(conn: &Connection, id: Id) -> rusqlite::Result<Option<Task>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM agent_task_queue WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()
}

/// Longest prompt a task may carry, in bytes: the prompts of a 500-task
/// listing page come to 32 MiB at most.
pub const MAX_PROMPT_BYTES: usize = 64 * 1024;
/// Longest issue_id, in bytes: an id from an issue tracker, not a text.
pub const MAX_ISSUE_ID_BYTES: usize = 256;
/// Tasks an agent may have waiting at once; the queue of a runtime whose
/// daemon never claims cannot grow without end.
pub const MAX_QUEUED_PER_AGENT: i64 = 1000;
/// Rows one `pending` reply carries, the head of the queue in claim order.
pub const PENDING_LIMIT: i64 = 100;

/// A task to queue for an agent.
pub struct NewTask<'a> {
    pub workspace: Id,
    pub agent: Id,
    pub prompt: &'a str,
    pub priority: i64,
    pub issue_id: Option<&'a str>,
    pub created_by: Id,
}

pub fn insert(conn: &Connection, new: &NewTask<'_>) -> rusqlite::Result<Task> {
    let id = Id::new();
    conn.execute(
        "INSERT INTO agent_task_queue (id, workspace_id, agent_id, status, priority, prompt,
             issue_id, created_by, created_at)
         VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8)",
        params![
            id,
            new.workspace,
            new.agent,
            new.priority,
            new.prompt,
            new.issue_id,
            new.created_by,
            now()
        ],
    )?;
    get(conn, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// How many of `agent`'s tasks are queued (read off the
/// (agent_id, status, …) index, at most [`MAX_QUEUED_PER_AGENT`] entries).
pub fn count_queued(conn: &Connection, agent: Id) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM agent_task_queue WHERE agent_id = ?1 AND status = 'queued'",
        [agent],
        |r| r.get(0),
    )
}

/// Up to `limit` of an agent's tasks, newest first (ties by id,
/// descending), after the row whose (stored created_at, id) is `after`;
/// each with its stored created_at, the key of the next page.
/// Bytes of task text (prompt, result, error) one listing page may carry;
/// a page ends early rather than pass it.
pub const PAGE_BYTES: usize = 4 * 1024 * 1024;

/// One page of an agent's tasks: the rows (each with its stored
/// `created_at`) and whether it ended early at [`PAGE_BYTES`].
pub fn list_for_agent(
    conn: &Connection,
    agent: Id,
    after: Option<(&str, Id)>,
    limit: usize,
) -> rusqlite::Result<(Vec<(Task, String)>, bool)> {
    // '~' sorts after every stored timestamp (they start with a digit):
    // the first page
    let (created_at, id) = after.map_or(("~".to_string(), String::new()), |(c, id)| {
        (c.to_string(), id.to_string())
    });
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM agent_task_queue
         WHERE agent_id = ?1 AND (created_at, id) < (?2, ?3)
         ORDER BY created_at DESC, id DESC
         LIMIT ?4"
    ))?;
    let rows = stmt.query_map(params![agent, created_at, id, limit as i64], |row| {
        Ok((from_row(row)?, row.get::<_, String>(13)?))
    })?;
    let (mut page, mut bytes) = (Vec::new(), 0);
    for row in rows {
        let row = row?;
        let task = &row.0;
        bytes += task.prompt.len()
            + task.error.as_ref().map_or(0, String::len)
            + task.result.as_ref().map_or(0, |r| r.to_string().len());
        if !page.is_empty() && bytes > PAGE_BYTES {
            return Ok((page, true));
        }
        page.push(row);
    }
    Ok((page, false))
}

/// The first [`PENDING_LIMIT`] of the tasks dispatched to `runtime` and
/// the queued tasks of the agents bound to it, in claim order (dispatched
/// ones first): a runtime may have thousands queued, and a daemon only
/// needs the head of its queue.
pub fn pending_for_runtime(conn: &Connection, runtime: Id) -> rusqlite::Result<Vec<Task>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM agent_task_queue
         WHERE (status = 'queued' AND agent_id IN
                   (SELECT id FROM agent WHERE runtime_id = ?1 AND archived_at IS NULL))
            OR (status = 'dispatched' AND runtime_id = ?1)
         ORDER BY status = 'queued', priority DESC, created_at, rowid
         LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![runtime, PENDING_LIMIT], from_row)?;
    rows.collect()
}

/// Dispatches the next task for `runtime`: the highest-priority, oldest
/// queued task of a non-archived agent bound to it whose dispatched +
/// running tasks are below its max_concurrent_tasks. The caller runs this
/// inside its write transaction, so two claims can never take one task or
/// overrun an agent's limit.
pub fn claim(conn: &Connection, runtime: Id) -> rusqlite::Result<Option<Task>> {
    claim_any(conn, &[runtime])
}

/// [`claim`] across several runtimes (a daemon's batch claim): the
/// highest-priority, oldest claimable task of any of them, dispatched to
/// the runtime its agent is bound to.
pub fn claim_any(conn: &Connection, runtimes: &[Id]) -> rusqlite::Result<Option<Task>> {
    let ids = serde_json::to_string(runtimes)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let found: Option<(Id, Id)> = conn
        .prepare_cached(
            "SELECT t.id, a.runtime_id FROM agent_task_queue t
             JOIN agent a ON a.id = t.agent_id
             WHERE a.runtime_id IN (SELECT value FROM json_each(?1))
               AND a.archived_at IS NULL AND t.status = 'queued'
               AND (SELECT count(*) FROM agent_task_queue busy
                    WHERE busy.agent_id = a.id AND busy.status IN ('dispatched', 'running'))
                   < a.max_concurrent_tasks
             ORDER BY t.priority DESC, t.created_at, t.rowid
             LIMIT 1",
        )?
        .query_row([ids], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((id, runtime)) = found else {
        return Ok(None);
    };
    conn.execute(
        "UPDATE agent_task_queue SET status = 'dispatched', runtime_id = ?2, dispatched_at = ?3
         WHERE id = ?1",
        params![id, runtime, now()],
    )?;
    get(conn, id)
}

/// A state change of a task, with the states it may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Start,
    Complete,
    Fail,
    Cancel,
}

impl Transition {
    pub fn from_states(self) -> &'static [&'static str] {
        match self {
            Transition::Start => &["dispatched"],
            Transition::Complete => &["running"],
            Transition::Fail => &["dispatched", "running"],
            Transition::Cancel => &["queued", "dispatched", "running"],
        }
    }

    pub fn to_state(self) -> &'static str {
        match self {
            Transition::Start => "running",
            Transition::Complete => "completed",
            Transition::Fail => "failed",
            Transition::Cancel => "cancelled",
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            Transition::Start => "start",
            Transition::Complete => "complete",
            Transition::Fail => "fail",
            Transition::Cancel => "cancel",
        }
    }
}

/// Applies `transition` to the task (the caller has checked it is legal),
/// recording the result or error.
pub fn apply(
    conn: &Connection,
    id: Id,
    transition: Transition,
    result: Option<&str>,
    error: Option<&str>,
) -> rusqlite::Result<Task> {
    let now = now();
    conn.execute(
        "UPDATE agent_task_queue SET
             status = ?2,
             started_at = CASE WHEN ?2 = 'running' THEN ?3 ELSE started_at END,
             completed_at = CASE WHEN ?2 = 'running' THEN completed_at ELSE ?3 END,
             result = coalesce(?4, result),
             error = coalesce(?5, error)
         WHERE id = ?1",
        params![id, transition.to_state(), now, result, error],
    )?;
    get(conn, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// Cancels every unfinished task of an agent; returns the cancelled ids.
pub fn cancel_for_agent(conn: &Connection, agent: Id) -> rusqlite::Result<Vec<Id>> {
    let mut stmt = conn.prepare(
        "UPDATE agent_task_queue SET status = 'cancelled', completed_at = ?2
         WHERE agent_id = ?1 AND status IN ('queued', 'dispatched', 'running')
         RETURNING id",
    )?;
    let rows = stmt.query_map(params![agent, now()], |r| r.get(0))?;
    rows.collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct HourCount {
    pub hour: i64,
    pub count: i64,
}

/// How many of the runtime's tasks started in each hour of the day (UTC),
/// for the hours that have any.
pub fn hourly_activity(conn: &Connection, runtime: Id) -> rusqlite::Result<Vec<HourCount>> {
    let mut stmt = conn.prepare(
        "SELECT CAST(substr(started_at, 12, 2) AS INTEGER) AS hour, count(*)
         FROM agent_task_queue
         WHERE runtime_id = ?1 AND started_at IS NOT NULL
         GROUP BY hour ORDER BY hour",
    )?;
    let rows = stmt.query_map([runtime], |r| {
        Ok(HourCount {
            hour: r.get(0)?,
            count: r.get(1)?,
        })
    })?;
    rows.collect()
}
