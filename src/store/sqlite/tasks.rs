//! `agent_task_queue` rows: queueing, the atomic claim, state transitions
//! and the hourly activity of a runtime.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::{AgentId, RuntimeId, TaskId, TaskStatus, Timestamp, WorkspaceId};
use crate::store::budgets::{agent_not_blocked, not_blocked};
use crate::store::sqlite::stored_time;
use crate::store::sweeps::FailedTask;
use crate::store::tasks::*;
use crate::store::tasks::{fallback_open, runtime_has_room};

const COLUMNS: &str =
    "id, workspace_id, agent_id, runtime_id, issue_id, status, priority, prompt, \
     dispatched_at, started_at, completed_at, result, error, created_at, created_by, \
     session_id, work_dir, prepare_lease_expires_at, branch_name, durable_work_dir, \
     failure_reason, cancel_acked_at, attempt, parent_task_id";

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
        dispatched_at: row.get(8)?,
        started_at: row.get(9)?,
        completed_at: row.get(10)?,
        result: result.and_then(|r| serde_json::from_str(&r).ok()),
        error: row.get(12)?,
        created_at: row.get(13)?,
        created_by: row.get(14)?,
        session_id: row.get(15)?,
        work_dir: row.get(16)?,
        prepare_lease_expires_at: row.get(17)?,
        branch_name: row.get(18)?,
        durable_work_dir: row.get(19)?,
        failure_reason: row.get(20)?,
        cancel_acked_at: row.get(21)?,
        attempt: row.get(22)?,
        parent_task_id: row.get(23)?,
        blocked_reason: None,
    })
}

pub fn count_by_status(conn: &Connection) -> rusqlite::Result<Vec<(TaskStatus, i64)>> {
    let mut stmt =
        conn.prepare_cached("SELECT status, count(*) FROM agent_task_queue GROUP BY status")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// `_lock` asks for nothing here: the one writer already orders writes.
pub fn get(conn: &Connection, id: TaskId, _lock: bool) -> rusqlite::Result<Option<Task>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM agent_task_queue WHERE id = ?1"
    ))?
    .query_row([id], from_row)
    .optional()
}

pub fn insert(conn: &Connection, new: &NewTask<'_>) -> rusqlite::Result<Task> {
    let id = TaskId::new();
    conn.prepare_cached(
        "INSERT INTO agent_task_queue (id, workspace_id, agent_id, status, priority, prompt,
             issue_id, created_by, created_at, attempt, parent_task_id)
         VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        id,
        new.workspace,
        new.agent,
        new.priority,
        new.prompt,
        new.issue_id,
        new.created_by,
        Timestamp::now(),
        new.attempt,
        new.parent
    ])?;
    get(conn, id, false)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

pub fn count_queued(conn: &Connection, agent: AgentId) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT count(*) FROM agent_task_queue WHERE agent_id = ?1 AND status = 'queued'",
    )?
    .query_row([agent], |r| r.get(0))
}

pub fn list_for_agent(
    conn: &Connection,
    agent: AgentId,
    after: Option<(Timestamp, TaskId)>,
    limit: usize,
) -> rusqlite::Result<(Vec<Task>, bool)> {
    // '~' sorts after every stored timestamp (they start with a digit):
    // the first page
    let (created_at, id) = after.map_or(("~".to_string(), String::new()), |(c, id)| {
        (stored_time(c), id.to_string())
    });
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM agent_task_queue
         WHERE agent_id = ?1 AND (created_at, id) < (?2, ?3)
         ORDER BY created_at DESC, id DESC
         LIMIT ?4"
    ))?;
    let rows = stmt.query_map(params![agent, created_at, id, limit as i64], from_row)?;
    let (mut page, mut bytes) = (Vec::new(), 0);
    for task in rows {
        let task = task?;
        bytes += task.prompt.len()
            + task.error.as_ref().map_or(0, String::len)
            + task.result.as_ref().map_or(0, |r| r.to_string().len());
        if !page.is_empty() && bytes > PAGE_BYTES {
            return Ok((page, true));
        }
        page.push(task);
    }
    Ok((page, false))
}

pub fn pending_for_runtime(conn: &Connection, runtime: RuntimeId) -> rusqlite::Result<Vec<Task>> {
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

/// The next claimable task of the runtimes in `?1`, and the runtime that
/// takes it, in claim order: tasks a budget blocks at `?2` are passed
/// over, so an agent's later task queued by a member with budget left is
/// claimed. An agent's tasks go to its own runtime, or to one of its
/// fallback runtimes while [`fallback_open`] (its own first when both
/// claim at once, then the fallbacks in their order).
///
/// It starts from the runtimes' agents and takes each one's first queued
/// task from the (agent_id, status, priority DESC, created_at) index, then
/// the best of those: one index probe per agent, whatever the length of
/// the queues (starting from the queued tasks made every claim scan all of
/// them, ~4.5 ms at 24,000 queued tasks instead of ~0.01 ms).
const NEXT_CLAIMABLE: &str = concat!(
    "SELECT t.id, c.runtime_id FROM (
        SELECT a.id AS agent_id, a.runtime_id AS runtime_id, 0 AS rank FROM agent a
        WHERE a.runtime_id IN (SELECT value FROM json_each(?1)) AND a.archived_at IS NULL
        UNION ALL
        SELECT a.id, f.runtime_id, f.position + 1 FROM agent_fallback f
        JOIN agent a ON a.id = f.agent_id
        WHERE f.runtime_id IN (SELECT value FROM json_each(?1)) AND a.archived_at IS NULL
          AND ",
    fallback_open!(
        "f.runtime_id",
        "strftime('%Y-%m-%dT%H:%M:%fZ', ?2, '-' || a.fallback_after_secs || ' seconds')"
    ),
    "
    ) c
    JOIN agent a ON a.id = c.agent_id
    JOIN agent_task_queue t ON t.id = (
        SELECT q.id FROM agent_task_queue q
        WHERE q.agent_id = a.id AND q.status = 'queued' AND ",
    not_blocked!("q", "?2"),
    "
        ORDER BY q.priority DESC, q.created_at, q.rowid
        LIMIT 1)
    WHERE ",
    agent_not_blocked!("a", "?2"),
    "
      AND (SELECT count(*) FROM agent_task_queue busy
           WHERE busy.agent_id = a.id AND busy.status IN ('dispatched', 'running'))
          < a.max_concurrent_tasks
      AND ",
    runtime_has_room!("c.runtime_id"),
    "
    ORDER BY t.priority DESC, t.created_at, t.rowid, c.rank
    LIMIT 1"
);

/// The claim's write: dispatches task `?3` to runtime `?4`, only if on the
/// row being written the task is still queued, charged to no budget that
/// blocks at `?2` (see [`crate::store::budgets`]), `?4` is one of the
/// claiming runtimes `?1` and the agent's own or an open fallback of it,
/// the agent (not archived) is below its `max_concurrent_tasks`, and the
/// runtime has capacity left ([`runtime_has_room`]). A claimer that lost a
/// race to the same task, or to the agent's last free slot, changes
/// nothing and gets no row back.
fn claim_statement() -> String {
    format!(
        "UPDATE agent_task_queue
         SET status = 'dispatched', dispatched_at = ?2, runtime_id = ?4
         WHERE id = ?3 AND status = 'queued' AND {not_blocked}
           AND ?4 IN (SELECT value FROM json_each(?1))
           AND EXISTS (SELECT 1 FROM agent a
               WHERE a.id = agent_task_queue.agent_id AND a.archived_at IS NULL
                 AND (SELECT count(*) FROM agent_task_queue busy
                      WHERE busy.agent_id = a.id AND busy.status IN ('dispatched', 'running'))
                     < a.max_concurrent_tasks
                 AND (a.runtime_id = ?4
                      OR (EXISTS (SELECT 1 FROM agent_fallback f
                                  WHERE f.agent_id = a.id AND f.runtime_id = ?4)
                          AND {fallback_open})))
           AND {has_room}
         RETURNING {COLUMNS}",
        not_blocked = not_blocked!("agent_task_queue", "?2"),
        fallback_open = fallback_open!(
            "?4",
            "strftime('%Y-%m-%dT%H:%M:%fZ', ?2, '-' || a.fallback_after_secs || ' seconds')"
        ),
        has_room = runtime_has_room!("?4"),
    )
}

/// `items` as a JSON array, for a `json_each(?)` list parameter.
fn json_list<T: serde::Serialize>(items: &[T]) -> rusqlite::Result<String> {
    serde_json::to_string(items).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Picks the next claimable task ([`NEXT_CLAIMABLE`]) and dispatches it
/// ([`claim_statement`]): two statements of one write transaction, which
/// the one writer runs with nothing in between.
pub fn claim_any(conn: &Connection, runtimes: &[RuntimeId]) -> rusqlite::Result<Option<Task>> {
    let runtimes = json_list(runtimes)?;
    let now = Timestamp::now();
    let candidate: Option<(TaskId, RuntimeId)> = conn
        .prepare_cached(NEXT_CLAIMABLE)?
        .query_row(params![runtimes, now], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((task, runtime)) = candidate else {
        return Ok(None);
    };
    conn.prepare_cached(&claim_statement())?
        .query_row(params![runtimes, now, task, runtime], from_row)
        .optional()
}

/// The claim's write for one given task and runtime, as a claimer that
/// chose them before a concurrent claim committed would run it.
#[cfg(test)]
fn claim_task(
    conn: &Connection,
    runtimes: &[RuntimeId],
    task: TaskId,
) -> rusqlite::Result<Option<Task>> {
    let runtime = runtimes.first().copied();
    conn.prepare_cached(&claim_statement())?
        .query_row(
            params![json_list(runtimes)?, Timestamp::now(), task, runtime],
            from_row,
        )
        .optional()
}

pub fn apply(
    conn: &Connection,
    id: TaskId,
    transition: Transition,
    outcome: &Outcome<'_>,
) -> rusqlite::Result<Option<Task>> {
    let from = json_list(transition.from_states())?;
    conn.prepare_cached(&format!(
        "UPDATE agent_task_queue SET
             status = ?2,
             started_at = CASE WHEN ?2 = 'running' THEN ?3 ELSE started_at END,
             completed_at = CASE WHEN ?2 = 'running' THEN completed_at ELSE ?3 END,
             result = coalesce(?4, result),
             error = coalesce(?5, error),
             failure_reason = coalesce(?7, failure_reason),
             -- a lease only means something while dispatched
             prepare_lease_expires_at = NULL
         WHERE id = ?1 AND status IN (SELECT value FROM json_each(?6))
         RETURNING {COLUMNS}"
    ))?
    .query_row(
        params![
            id,
            transition.to_state(),
            Timestamp::now(),
            outcome.result,
            outcome.error,
            from,
            outcome.reason
        ],
        from_row,
    )
    .optional()
}

pub fn cancel_for_agent(conn: &Connection, agent: AgentId) -> rusqlite::Result<Vec<TaskId>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE agent_task_queue
         SET status = 'cancelled', completed_at = ?2, prepare_lease_expires_at = NULL,
             failure_reason = 'agent_archived'
         WHERE agent_id = ?1 AND status IN ('queued', 'dispatched', 'running')
         RETURNING id",
    )?;
    let rows = stmt.query_map(params![agent, Timestamp::now()], |r| r.get(0))?;
    rows.collect()
}

pub fn start_quarters(
    conn: &Connection,
    runtime: RuntimeId,
) -> rusqlite::Result<Vec<(chrono::DateTime<chrono::Utc>, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT substr(started_at, 1, 14)
                    || printf('%02d', (CAST(substr(started_at, 15, 2) AS INTEGER) / 15) * 15),
                count(*)
         FROM agent_task_queue
         WHERE runtime_id = ?1 AND started_at IS NOT NULL
         GROUP BY 1",
    )?;
    let rows = stmt.query_map([runtime], |r| {
        let quarter: String = r.get(0)?;
        let at = chrono::NaiveDateTime::parse_from_str(&quarter, "%Y-%m-%dT%H:%M")
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?
            .and_utc();
        Ok((at, r.get(1)?))
    })?;
    rows.collect()
}

pub fn set_prepare_lease(
    conn: &Connection,
    id: TaskId,
    runtime: RuntimeId,
    until: Timestamp,
) -> rusqlite::Result<Option<Task>> {
    conn.prepare_cached(&format!(
        "UPDATE agent_task_queue SET prepare_lease_expires_at = ?3
         WHERE id = ?1 AND runtime_id = ?2 AND status = 'dispatched'
         RETURNING {COLUMNS}"
    ))?
    .query_row(params![id, runtime, until], from_row)
    .optional()
}

pub fn pin_session(
    conn: &Connection,
    id: TaskId,
    session_id: Option<&str>,
    work_dir: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE agent_task_queue
         SET session_id = coalesce(?2, session_id), work_dir = coalesce(?3, work_dir)
         WHERE id = ?1",
    )?
    .execute(params![id, session_id, work_dir])?;
    Ok(())
}

pub fn record_cancel_ack(
    conn: &Connection,
    id: TaskId,
    ack: &CancelAck,
    at: Timestamp,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE agent_task_queue SET
             cancel_acked_at = coalesce(cancel_acked_at, ?2),
             branch_name = coalesce(branch_name, ?3),
             durable_work_dir = coalesce(durable_work_dir, ?4),
             -- the reason goes with the message it explains (and says
             -- more than the cancel's own cancelled_by_user)
             failure_reason = CASE WHEN error IS NULL AND ?5 IS NOT NULL
                                   THEN coalesce(?6, failure_reason) ELSE failure_reason END,
             error = coalesce(error, ?5)
         WHERE id = ?1 AND status = 'cancelled'",
        )?
        .execute(params![
            id,
            at,
            ack.branch_name,
            ack.durable_work_dir,
            ack.error_message,
            ack.failure_reason
        ])?;
    Ok(changed > 0)
}

pub fn fail_orphans(
    conn: &Connection,
    runtime: RuntimeId,
    keep: &[TaskId],
    dispatched_before: Option<Timestamp>,
) -> rusqlite::Result<Vec<FailedTask>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE agent_task_queue
         SET status = 'failed', error = ?2, failure_reason = 'runtime_recovery',
             completed_at = ?3, prepare_lease_expires_at = NULL
         WHERE id IN (SELECT id FROM agent_task_queue
                      WHERE runtime_id = ?1 AND status IN ('dispatched', 'running')
                        AND id NOT IN (SELECT value FROM json_each(?5))
                        AND (?6 IS NULL OR dispatched_at < ?6)
                      LIMIT ?4)
           -- again on the row itself: a task that ended meanwhile keeps
           -- its end
           AND runtime_id = ?1 AND status IN ('dispatched', 'running')
         RETURNING id, workspace_id, agent_id, failure_reason",
    )?;
    let rows = stmt.query_map(
        params![
            runtime,
            ORPHAN_ERROR,
            Timestamp::now(),
            crate::store::sweeps::BATCH,
            json_list(keep)?,
            dispatched_before
        ],
        |r| {
            Ok(FailedTask {
                id: r.get(0)?,
                workspace_id: r.get(1)?,
                agent_id: r.get(2)?,
                reason: r.get(3)?,
            })
        },
    )?;
    rows.collect()
}

pub fn active_on(conn: &Connection, runtime: RuntimeId) -> rusqlite::Result<Vec<ActiveTask>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, runtime_id, agent_id, status FROM agent_task_queue
         WHERE runtime_id = ?1 AND status IN ('dispatched', 'running')
         LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![runtime, MAX_ACTIVE_LISTED], |r| {
        Ok(ActiveTask {
            id: r.get(0)?,
            runtime_id: r.get(1)?,
            agent_id: r.get(2)?,
            status: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// `text` (part of column `idx`) as a `T`, or the conversion error a
/// column of the wrong kind gives.
fn parse_column<T: std::str::FromStr<Err = String>>(idx: usize, text: &str) -> rusqlite::Result<T> {
    text.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
    })
}

pub fn issue_tasks(
    conn: &Connection,
    workspace: Option<WorkspaceId>,
    issue_ids: &[String],
) -> rusqlite::Result<Vec<IssueTasks>> {
    let ids = json_list(issue_ids)?;
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
        let last_finished = match last.as_deref().and_then(|l| l.split_once(' ')) {
            Some((at, status)) => Some((parse_column(5, at)?, parse_column(5, status)?)),
            None => None,
        };
        Ok(IssueTasks {
            issue_id: r.get(0)?,
            runtime_id: r.get(1)?,
            active: r.get(2)?,
            queued: r.get(3)?,
            updated_at: r.get(4)?,
            last_finished,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests;
