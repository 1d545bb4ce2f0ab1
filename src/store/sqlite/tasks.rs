//! `agent_task_queue` rows: queueing, the atomic claim, state transitions
//! and the hourly activity of a runtime.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::Id;
use crate::store::sweeps::FailedTask;
#[allow(unused_imports)]
use crate::store::tasks::*;
use crate::store::{api_time, now};

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

pub fn count_by_status(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt =
        conn.prepare_cached("SELECT status, count(*) FROM agent_task_queue GROUP BY status")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

pub fn get(conn: &Connection, id: Id) -> rusqlite::Result<Option<Task>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM agent_task_queue WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()
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

pub fn count_queued(conn: &Connection, agent: Id) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM agent_task_queue WHERE agent_id = ?1 AND status = 'queued'",
        [agent],
        |r| r.get(0),
    )
}

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

pub fn claim(conn: &Connection, runtime: Id) -> rusqlite::Result<Option<Task>> {
    claim_any(conn, &[runtime])
}

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

pub fn set_prepare_lease(conn: &Connection, id: Id, until: &str) -> rusqlite::Result<Task> {
    conn.execute(
        "UPDATE agent_task_queue SET prepare_lease_expires_at = ?2 WHERE id = ?1",
        params![id, until],
    )?;
    get(conn, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

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
        params![runtime, ORPHAN_ERROR, now(), crate::store::sweeps::BATCH],
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
