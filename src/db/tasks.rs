//! `agent_task_queue` rows: queueing, the atomic claim, state transitions
//! and the hourly activity of a runtime.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use serde_json::Value;

use crate::db::sweeps::FailedTask;
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
    /// The agent's session and work directory, as the daemon pinned them.
    pub session_id: Option<String>,
    pub work_dir: Option<String>,
    /// While dispatched: the daemon is preparing it until then.
    pub prepare_lease_expires_at: Option<String>,
    /// What the daemon reported on acknowledging a cancellation.
    pub branch_name: Option<String>,
    pub durable_work_dir: Option<String>,
    pub failure_reason: Option<String>,
    pub cancel_acked_at: Option<String>,
}

const COLUMNS: &str =
    "id, workspace_id, agent_id, runtime_id, issue_id, status, priority, prompt, \
     dispatched_at, started_at, completed_at, result, error, created_at, created_by, \
     session_id, work_dir, prepare_lease_expires_at, branch_name, durable_work_dir, \
     failure_reason, cancel_acked_at";

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
        session_id: row.get(15)?,
        work_dir: row.get(16)?,
        prepare_lease_expires_at: opt_time(row, 17)?,
        branch_name: row.get(18)?,
        durable_work_dir: row.get(19)?,
        failure_reason: row.get(20)?,
        cancel_acked_at: opt_time(row, 21)?,
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
             error = coalesce(?5, error),
             -- a lease only means something while dispatched
             prepare_lease_expires_at = NULL
         WHERE id = ?1",
        params![id, transition.to_state(), now, result, error],
    )?;
    get(conn, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// Cancels every unfinished task of an agent; returns the cancelled ids.
pub fn cancel_for_agent(conn: &Connection, agent: Id) -> rusqlite::Result<Vec<Id>> {
    let mut stmt = conn.prepare(
        "UPDATE agent_task_queue
         SET status = 'cancelled', completed_at = ?2, prepare_lease_expires_at = NULL
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

/// How long a prepare lease lasts: the daemon renews it every 15 s while it
/// prepares a claimed task, so the lease lapses after three missed renewals.
pub const PREPARE_LEASE_SECS: i64 = 45;

/// Sets the prepare lease of a task (the caller has checked it is
/// dispatched) to end at `until`.
pub fn set_prepare_lease(conn: &Connection, id: Id, until: &str) -> rusqlite::Result<Task> {
    conn.execute(
        "UPDATE agent_task_queue SET prepare_lease_expires_at = ?2 WHERE id = ?1",
        params![id, until],
    )?;
    get(conn, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// Records the agent's session and work directory; an absent one keeps
/// what was pinned before.
pub fn pin_session(
    conn: &Connection,
    id: Id,
    session_id: Option<&str>,
    work_dir: Option<&str>,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE agent_task_queue
         SET session_id = coalesce(?2, session_id), work_dir = coalesce(?3, work_dir)
         WHERE id = ?1",
        params![id, session_id, work_dir],
    )?;
    Ok(())
}

/// What a daemon reports when it acknowledges a cancellation.
#[derive(Debug, Default)]
pub struct CancelAck {
    pub branch_name: Option<String>,
    pub durable_work_dir: Option<String>,
    pub error_message: Option<String>,
    pub failure_reason: Option<String>,
}

/// Records the acknowledgement of a cancelled task. Nothing already
/// recorded is overwritten, so a replayed ack changes nothing; a task that
/// is not cancelled is left alone (its own complete or fail report is the
/// one that counts). Returns whether the task was cancelled.
pub fn record_cancel_ack(
    conn: &Connection,
    id: Id,
    ack: &CancelAck,
    at: &str,
) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE agent_task_queue SET
             cancel_acked_at = coalesce(cancel_acked_at, ?2),
             branch_name = coalesce(branch_name, ?3),
             durable_work_dir = coalesce(durable_work_dir, ?4),
             -- the reason goes with the message it explains
             failure_reason = CASE WHEN error IS NULL AND ?5 IS NOT NULL
                                   THEN coalesce(failure_reason, ?6) ELSE failure_reason END,
             error = coalesce(error, ?5)
         WHERE id = ?1 AND status = 'cancelled'",
        params![
            id,
            at,
            ack.branch_name,
            ack.durable_work_dir,
            ack.error_message,
            ack.failure_reason
        ],
    )?;
    Ok(changed > 0)
}

/// Why [`fail_orphans`] fails a task.
pub const ORPHAN_ERROR: &str = "daemon restarted while task was in flight";

/// Fails up to [`crate::db::sweeps::BATCH`] tasks dispatched to or running
/// on `runtime`: its daemon has restarted, so nothing runs them any more.
pub fn fail_orphans(conn: &Connection, runtime: Id) -> rusqlite::Result<Vec<FailedTask>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE agent_task_queue
         SET status = 'failed', error = ?2, failure_reason = 'runtime_recovery',
             completed_at = ?3, prepare_lease_expires_at = NULL
         WHERE id IN (SELECT id FROM agent_task_queue
                      WHERE runtime_id = ?1 AND status IN ('dispatched', 'running')
                      LIMIT ?4)
         RETURNING id, workspace_id, agent_id",
    )?;
    let rows = stmt.query_map(
        params![runtime, ORPHAN_ERROR, now(), crate::db::sweeps::BATCH],
        |r| {
            Ok(FailedTask {
                id: r.get(0)?,
                workspace_id: r.get(1)?,
                agent_id: r.get(2)?,
            })
        },
    )?;
    rows.collect()
}

/// The tasks carrying one issue that ran, run or wait on one runtime.
#[derive(Debug, Clone)]
pub struct IssueTasks {
    pub issue_id: String,
    /// Where they run (queued ones: the runtime of their agent).
    pub runtime_id: Option<Id>,
    /// Some of them are dispatched or running.
    pub active: bool,
    /// Some of them are queued.
    pub queued: bool,
    /// The latest thing that happened to any of them (stored form).
    pub updated_at: String,
    /// When the last of them finished, and how (`completed`, `failed`,
    /// `cancelled`).
    pub last_finished: Option<(String, String)>,
}

/// The tasks carrying any of `issue_ids` (in `workspace`, if given), one
/// row per (issue, runtime), read off the (issue_id, workspace_id) index.
pub fn issue_tasks(
    conn: &Connection,
    workspace: Option<Id>,
    issue_ids: &[String],
) -> rusqlite::Result<Vec<IssueTasks>> {
    let ids = serde_json::to_string(issue_ids)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    // stored times are fixed width, so the text max is the latest time, and
    // `<completed_at> <status>` sorts by its time
    let mut stmt = conn.prepare_cached(
        "SELECT t.issue_id,
                coalesce(t.runtime_id, CASE WHEN t.status = 'queued' THEN a.runtime_id END) AS rt,
                max(t.status IN ('dispatched', 'running')),
                max(t.status = 'queued'),
                max(coalesce(t.completed_at, t.started_at, t.dispatched_at, t.created_at)),
                max(CASE WHEN t.completed_at IS NOT NULL
                         THEN t.completed_at || ' ' || t.status END)
         FROM agent_task_queue t LEFT JOIN agent a ON a.id = t.agent_id
         WHERE t.issue_id IN (SELECT value FROM json_each(?1))
           AND (?2 IS NULL OR t.workspace_id = ?2)
         GROUP BY t.issue_id, rt",
    )?;
    let rows = stmt.query_map(params![ids, workspace], |r| {
        let last: Option<String> = r.get(5)?;
        Ok(IssueTasks {
            issue_id: r.get(0)?,
            runtime_id: r.get(1)?,
            active: r.get(2)?,
            queued: r.get(3)?,
            updated_at: r.get(4)?,
            last_finished: last.and_then(|l| {
                l.split_once(' ')
                    .map(|(at, status)| (at.to_string(), status.to_string()))
            }),
        })
    })?;
    rows.collect()
}
