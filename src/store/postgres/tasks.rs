//! `agent_task_queue` rows: queueing, the atomic claim, state transitions
//! and the hourly activity of a runtime.

use postgres::Row;

use super::Client;

use crate::domain::{AgentId, EntityId, RuntimeId, TaskId, TaskStatus, Timestamp, WorkspaceId};
use crate::store::budgets::{agent_not_blocked, not_blocked};
use crate::store::sweeps::FailedTask;
use crate::store::tasks::*;
use crate::store::Error;

const COLUMNS: &str =
    "id, workspace_id, agent_id, runtime_id, issue_id, status, priority, prompt, \
     dispatched_at, started_at, completed_at, result, error, created_at, created_by, \
     session_id, work_dir, prepare_lease_expires_at, branch_name, durable_work_dir, \
     failure_reason, cancel_acked_at, attempt, parent_task_id";

fn from_row(row: &Row) -> Result<Task, postgres::Error> {
    Ok(Task {
        id: row.try_get(0)?,
        workspace_id: row.try_get(1)?,
        agent_id: row.try_get(2)?,
        runtime_id: row.try_get(3)?,
        issue_id: row.try_get(4)?,
        status: row.try_get(5)?,
        priority: row.try_get(6)?,
        prompt: row.try_get(7)?,
        dispatched_at: row.try_get(8)?,
        started_at: row.try_get(9)?,
        completed_at: row.try_get(10)?,
        result: row.try_get::<_, Option<serde_json::Value>>(11)?,
        error: row.try_get(12)?,
        created_at: row.try_get(13)?,
        created_by: row.try_get(14)?,
        session_id: row.try_get(15)?,
        work_dir: row.try_get(16)?,
        prepare_lease_expires_at: row.try_get(17)?,
        branch_name: row.try_get(18)?,
        durable_work_dir: row.try_get(19)?,
        failure_reason: row.try_get(20)?,
        cancel_acked_at: row.try_get(21)?,
        attempt: row.try_get(22)?,
        parent_task_id: row.try_get(23)?,
        blocked_reason: None,
    })
}

fn from_rows(rows: Vec<Row>) -> Result<Vec<Task>, postgres::Error> {
    rows.iter().map(from_row).collect()
}

/// `ids` as a `uuid[]` parameter.
fn uuids<T: EntityId>(ids: &[T]) -> Vec<uuid::Uuid> {
    ids.iter().map(|id| id.uuid()).collect()
}

pub fn count_by_status(conn: &mut Client) -> Result<Vec<(TaskStatus, i64)>, postgres::Error> {
    conn.query(
        "SELECT status, count(*) FROM agent_task_queue GROUP BY status",
        &[],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

/// With `lock` (inside a write), `FOR UPDATE`.
pub fn get(conn: &mut Client, id: TaskId, lock: bool) -> Result<Option<Task>, postgres::Error> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM agent_task_queue WHERE id = $1{lock}"),
        &[&id],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// One statement (`INSERT … RETURNING`) where SQLite inserts, then reads.
pub fn insert(conn: &mut Client, new: &NewTask<'_>) -> Result<Task, Error> {
    let row = conn
        .query_opt(
            &format!(
                "INSERT INTO agent_task_queue (id, workspace_id, agent_id, status, priority,
                     prompt, issue_id, created_by, created_at, attempt, parent_task_id)
                 VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10)
                 RETURNING {COLUMNS}"
            ),
            &[
                &TaskId::new(),
                &new.workspace,
                &new.agent,
                &new.priority,
                &new.prompt,
                &new.issue_id,
                &new.created_by,
                &Timestamp::now(),
                &new.attempt,
                &new.parent,
            ],
        )?
        .ok_or_else(|| Error::internal("database: the inserted task was not returned"))?;
    Ok(from_row(&row)?)
}

pub fn count_queued(conn: &mut Client, agent: AgentId) -> Result<i64, postgres::Error> {
    conn.query_one(
        "SELECT count(*) FROM agent_task_queue WHERE agent_id = $1 AND status = 'queued'",
        &[&agent],
    )?
    .try_get(0)
}

pub fn list_for_agent(
    conn: &mut Client,
    agent: AgentId,
    after: Option<(Timestamp, TaskId)>,
    limit: usize,
) -> Result<(Vec<Task>, bool), postgres::Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = match after {
        None => conn.query(
            &format!(
                "SELECT {COLUMNS} FROM agent_task_queue
                 WHERE agent_id = $1
                 ORDER BY created_at DESC, id DESC
                 LIMIT $2"
            ),
            &[&agent, &limit],
        )?,
        Some((created_at, id)) => conn.query(
            &format!(
                "SELECT {COLUMNS} FROM agent_task_queue
                 WHERE agent_id = $1 AND (created_at, id) < ($2, $3)
                 ORDER BY created_at DESC, id DESC
                 LIMIT $4"
            ),
            &[&agent, &created_at, &id, &limit],
        )?,
    };
    let (mut page, mut bytes) = (Vec::new(), 0);
    for row in &rows {
        let task = from_row(row)?;
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

pub fn pending_for_runtime(
    conn: &mut Client,
    runtime: RuntimeId,
) -> Result<Vec<Task>, postgres::Error> {
    from_rows(conn.query(
        &format!(
            "SELECT {COLUMNS} FROM agent_task_queue
             WHERE (status = 'queued' AND agent_id IN
                       (SELECT id FROM agent WHERE runtime_id = $1 AND archived_at IS NULL))
                OR (status = 'dispatched' AND runtime_id = $1)
             ORDER BY status = 'queued', priority DESC, created_at, seq
             LIMIT $2"
        ),
        &[&runtime, &PENDING_LIMIT],
    )?)
}

/// Locks, in id order, every non-archived agent bound to one of the
/// runtimes in `$1` or naming one of them as a fallback, and returns their
/// ids. Claims of the same runtimes
/// take turns on these rows until they commit, so the busy tasks a claim
/// counts afterwards (in a statement of its own, whose snapshot is taken
/// once the locks are held) are all the agent's busy tasks: no concurrent
/// claim can overrun `max_concurrent_tasks`. One order for everybody (and
/// the same set again for every claim of a batch) means claimers never
/// wait on each other in a cycle.
const LOCK_AGENTS: &str = "SELECT id FROM agent
    WHERE archived_at IS NULL
      AND (runtime_id = ANY($1)
           OR id IN (SELECT agent_id FROM agent_fallback WHERE runtime_id = ANY($1)))
    ORDER BY id
    FOR UPDATE";

/// The next claimable task among the locked agents `$1`, and the runtime
/// of `$2` that takes it (the agent's own, or an open fallback of it), in
/// SQLite's claim order: each agent's first queued task by (priority DESC,
/// created_at, seq) from the (agent_id, status, priority DESC, created_at)
/// index, then the best of those among agents below their
/// `max_concurrent_tasks` on runtimes with capacity left.
///
/// The task row is locked `FOR UPDATE SKIP LOCKED`: a task another
/// transaction is changing right now (a cancel, say) is passed over
/// instead of waited for. A transition locks the task first and the agent
/// second (its status reconciliation), the claim the agents first: waiting
/// here could close a cycle.
const NEXT_CLAIMABLE: &str = concat!(
    "SELECT t.id, c.runtime_id FROM (
        SELECT a.id AS agent_id, a.runtime_id AS runtime_id, 0::bigint AS rank FROM agent a
        WHERE a.id = ANY($1) AND a.runtime_id = ANY($2) AND a.archived_at IS NULL
        UNION ALL
        SELECT a.id, f.runtime_id, f.position + 1 FROM agent_fallback f
        JOIN agent a ON a.id = f.agent_id
        WHERE a.id = ANY($1) AND f.runtime_id = ANY($2) AND a.archived_at IS NULL
          AND ",
    fallback_open!(
        "f.runtime_id",
        "$3::timestamptz - make_interval(secs => a.fallback_after_secs)"
    ),
    "
    ) c
    JOIN agent a ON a.id = c.agent_id
    JOIN agent_task_queue t ON t.id = (
        SELECT q.id FROM agent_task_queue q
        WHERE q.agent_id = a.id AND q.status = 'queued' AND ",
    not_blocked!("q", "$3::timestamptz"),
    "
        ORDER BY q.priority DESC, q.created_at, q.seq
        LIMIT 1)
    WHERE ",
    agent_not_blocked!("a", "$3::timestamptz"),
    "
      AND (SELECT count(*) FROM agent_task_queue busy
           WHERE busy.agent_id = a.id AND busy.status IN ('dispatched', 'running'))
          < a.max_concurrent_tasks
      AND ",
    runtime_has_room!("c.runtime_id"),
    "
    ORDER BY t.priority DESC, t.created_at, t.seq, c.rank
    LIMIT 1
    FOR UPDATE OF t SKIP LOCKED"
);

/// Dispatches task `$3` to runtime `$4`, only if on the row being written
/// the task is still queued and `$4` (one of the claiming runtimes `$1`)
/// is its agent's own runtime or an open fallback of it, the agent (not
/// archived) below its `max_concurrent_tasks` and the runtime with
/// capacity left, as SQLite's claim statement checks it.
fn claim_statement() -> String {
    format!(
        "UPDATE agent_task_queue
         SET status = 'dispatched', dispatched_at = $2, runtime_id = $4::uuid
         WHERE id = $3 AND status = 'queued'
           AND {not_blocked}
           AND $4::uuid = ANY($1::uuid[])
           AND EXISTS (SELECT 1 FROM agent a
               WHERE a.id = agent_task_queue.agent_id AND a.archived_at IS NULL
                 AND (SELECT count(*) FROM agent_task_queue busy
                      WHERE busy.agent_id = a.id AND busy.status IN ('dispatched', 'running'))
                     < a.max_concurrent_tasks
                 AND (a.runtime_id = $4::uuid
                      OR (EXISTS (SELECT 1 FROM agent_fallback f
                                  WHERE f.agent_id = a.id AND f.runtime_id = $4::uuid)
                          AND {fallback_open})))
           AND {has_room}
         RETURNING {COLUMNS}",
        not_blocked = not_blocked!("agent_task_queue", "$2::timestamptz"),
        fallback_open = fallback_open!(
            "$4::uuid",
            "$2::timestamptz - make_interval(secs => a.fallback_after_secs)"
        ),
        has_room = runtime_has_room!("$4::uuid"),
    )
}

/// The advisory locks a claim of the runtimes `$1` takes before anything
/// else, in this order: one per machine with a `machine_limit` and one per
/// workspace with a `max_concurrent_tasks` among them. Claims of other
/// runtimes of one machine (or workspace) lock other agents, so without
/// these two of them could each count the other's tasks as not yet
/// dispatched. A runtime's own limit needs none: every claim of a runtime
/// locks all its agents. Only claims take these locks, always first and
/// sorted, so they never wait on each other in a cycle; a limit set while
/// a claim runs counts from the next claim on, like one set a moment later.
const CAPACITY_LOCKS: &str = "SELECT DISTINCT space, key FROM (
        SELECT hashtext('agenthub machine capacity') AS space,
               hashtext(m.owner_id::text || '/' || m.daemon_id) AS key
        FROM agent_runtime r
        JOIN machine_limit m ON m.owner_id = r.owner_id AND m.daemon_id = r.daemon_id
        WHERE r.id = ANY($1)
        UNION ALL
        SELECT hashtext('agenthub workspace capacity'), hashtext(w.id::text)
        FROM agent_runtime r JOIN workspace w ON w.id = r.workspace_id
        WHERE r.id = ANY($1) AND w.max_concurrent_tasks IS NOT NULL
    ) keys
    ORDER BY space, key";

/// How often a claim picks again when the task it picked could not be
/// dispatched after all (it cannot, with the locks held; a safety net).
const CLAIM_ATTEMPTS: usize = 3;

/// The claim in three statements, where SQLite needs one: lock the
/// runtimes' agents ([`LOCK_AGENTS`]), pick and lock the next task
/// ([`NEXT_CLAIMABLE`]), then the conditional write ([`claim_statement`]).
/// Each statement reads a snapshot taken after the previous one's locks
/// were granted, so the choice and the concurrency count see every claim
/// that committed before this one could proceed.
pub fn claim_any(
    conn: &mut Client,
    runtimes: &[RuntimeId],
) -> Result<Option<Task>, postgres::Error> {
    let runtimes = uuids(runtimes);
    for key in conn.query(CAPACITY_LOCKS, &[&runtimes])? {
        let (space, key): (i32, i32) = (key.try_get(0)?, key.try_get(1)?);
        conn.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&space, &key])?;
    }
    let agents: Vec<uuid::Uuid> = conn
        .query(LOCK_AGENTS, &[&runtimes])?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    if agents.is_empty() {
        return Ok(None);
    }
    let claim = claim_statement();
    for _ in 0..CLAIM_ATTEMPTS {
        let Some(candidate) =
            conn.query_opt(NEXT_CLAIMABLE, &[&agents, &runtimes, &Timestamp::now()])?
        else {
            return Ok(None);
        };
        let task: TaskId = candidate.try_get(0)?;
        let runtime: uuid::Uuid = candidate.try_get(1)?;
        if let Some(row) =
            conn.query_opt(&claim, &[&runtimes, &Timestamp::now(), &task, &runtime])?
        {
            return Ok(Some(from_row(&row)?));
        }
    }
    Ok(None)
}

pub fn apply(
    conn: &mut Client,
    id: TaskId,
    transition: Transition,
    outcome: &Outcome<'_>,
) -> Result<Option<Task>, postgres::Error> {
    let from: Vec<&str> = transition
        .from_states()
        .iter()
        .map(|s| s.as_str())
        .collect();
    conn.query_opt(
        &format!(
            "UPDATE agent_task_queue SET
                 status = $2::text,
                 started_at = CASE WHEN $2::text = 'running' THEN $3::timestamptz
                                   ELSE started_at END,
                 completed_at = CASE WHEN $2::text = 'running' THEN completed_at
                                     ELSE $3::timestamptz END,
                 result = coalesce($4::text::jsonb, result),
                 error = coalesce($5::text, error),
                 failure_reason = coalesce($7::text, failure_reason),
                 -- a lease only means something while dispatched
                 prepare_lease_expires_at = NULL
             WHERE id = $1 AND status = ANY($6::text[])
             RETURNING {COLUMNS}"
        ),
        &[
            &id,
            &transition.to_state(),
            &Timestamp::now(),
            &outcome.result,
            &outcome.error,
            &from,
            &outcome.reason,
        ],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub fn cancel_for_agent(conn: &mut Client, agent: AgentId) -> Result<Vec<TaskId>, postgres::Error> {
    conn.query(
        "WITH cancelled AS (
             UPDATE agent_task_queue
             SET status = 'cancelled', completed_at = $2, prepare_lease_expires_at = NULL,
                 failure_reason = 'agent_archived'
             WHERE agent_id = $1 AND status IN ('queued', 'dispatched', 'running')
             RETURNING id, seq)
         SELECT id FROM cancelled ORDER BY seq",
        &[&agent, &Timestamp::now()],
    )?
    .iter()
    .map(|r| r.try_get(0))
    .collect()
}

/// The hour of day in UTC whatever the session's time zone, as a bigint
/// (SQLite's INTEGER).
pub fn start_quarters(
    conn: &mut Client,
    runtime: RuntimeId,
) -> Result<Vec<(chrono::DateTime<chrono::Utc>, i64)>, postgres::Error> {
    conn.query(
        "SELECT date_bin('15 minutes', started_at, '2000-01-01 00:00:00+00'), count(*)
         FROM agent_task_queue
         WHERE runtime_id = $1 AND started_at IS NOT NULL
         GROUP BY 1",
        &[&runtime],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

pub fn set_prepare_lease(
    conn: &mut Client,
    id: TaskId,
    runtime: RuntimeId,
    until: Timestamp,
) -> Result<Option<Task>, postgres::Error> {
    conn.query_opt(
        &format!(
            "UPDATE agent_task_queue SET prepare_lease_expires_at = $3
             WHERE id = $1 AND runtime_id = $2 AND status = 'dispatched'
             RETURNING {COLUMNS}"
        ),
        &[&id, &runtime, &until],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub fn pin_session(
    conn: &mut Client,
    id: TaskId,
    session_id: Option<&str>,
    work_dir: Option<&str>,
) -> Result<(), postgres::Error> {
    conn.execute(
        "UPDATE agent_task_queue
         SET session_id = coalesce($2::text, session_id), work_dir = coalesce($3::text, work_dir)
         WHERE id = $1",
        &[&id, &session_id, &work_dir],
    )?;
    Ok(())
}

pub fn record_cancel_ack(
    conn: &mut Client,
    id: TaskId,
    ack: &CancelAck,
    at: Timestamp,
) -> Result<bool, postgres::Error> {
    let changed = conn.execute(
        "UPDATE agent_task_queue SET
             cancel_acked_at = coalesce(cancel_acked_at, $2::timestamptz),
             branch_name = coalesce(branch_name, $3::text),
             durable_work_dir = coalesce(durable_work_dir, $4::text),
             -- the reason goes with the message it explains
             -- (and says more than the cancel's own cancelled_by_user)
             failure_reason = CASE WHEN error IS NULL AND $5::text IS NOT NULL
                                   THEN coalesce($6::text, failure_reason)
                                   ELSE failure_reason END,
             error = coalesce(error, $5::text)
         WHERE id = $1 AND status = 'cancelled'",
        &[
            &id,
            &at,
            &ack.branch_name,
            &ack.durable_work_dir,
            &ack.error_message,
            &ack.failure_reason,
        ],
    )?;
    Ok(changed > 0)
}

/// The failed tasks come back in insertion order (`seq`).
pub fn fail_orphans(
    conn: &mut Client,
    runtime: RuntimeId,
    keep: &[TaskId],
    dispatched_before: Option<Timestamp>,
) -> Result<Vec<FailedTask>, postgres::Error> {
    conn.query(
        "WITH failed AS (
             UPDATE agent_task_queue
             SET status = 'failed', error = $2, failure_reason = 'runtime_recovery',
                 completed_at = $3, prepare_lease_expires_at = NULL
             WHERE id IN (SELECT id FROM agent_task_queue
                          WHERE runtime_id = $1 AND status IN ('dispatched', 'running')
                            AND NOT (id = ANY($5))
                            AND ($6::timestamptz IS NULL OR dispatched_at < $6)
                          LIMIT $4)
               -- again on the row itself: a task that ended meanwhile keeps
               -- its end
               AND runtime_id = $1 AND status IN ('dispatched', 'running')
             RETURNING id, workspace_id, agent_id, failure_reason, seq)
         SELECT id, workspace_id, agent_id, failure_reason FROM failed ORDER BY seq",
        &[
            &runtime,
            &ORPHAN_ERROR,
            &Timestamp::now(),
            &crate::store::sweeps::BATCH,
            &uuids(keep),
            &dispatched_before,
        ],
    )?
    .iter()
    .map(|r| {
        Ok(FailedTask {
            id: r.try_get(0)?,
            workspace_id: r.try_get(1)?,
            agent_id: r.try_get(2)?,
            reason: r.try_get(3)?,
        })
    })
    .collect()
}

pub fn active_on(
    conn: &mut Client,
    runtime: RuntimeId,
) -> Result<Vec<ActiveTask>, postgres::Error> {
    conn.query(
        "SELECT id, runtime_id, agent_id, status FROM agent_task_queue
         WHERE runtime_id = $1 AND status IN ('dispatched', 'running')
         LIMIT $2",
        &[&runtime, &MAX_ACTIVE_LISTED],
    )?
    .iter()
    .map(|r| {
        Ok(ActiveTask {
            id: r.try_get(0)?,
            runtime_id: r.try_get(1)?,
            agent_id: r.try_get(2)?,
            status: r.try_get(3)?,
        })
    })
    .collect()
}

/// SQLite's text `max(completed_at || ' ' || status)` is the latest
/// completion, ties broken by the greater status word: here `max` of the
/// time and the first status of the finished tasks in that order.
pub fn issue_tasks(
    conn: &mut Client,
    workspace: Option<WorkspaceId>,
    issue_ids: &[String],
) -> Result<Vec<IssueTasks>, postgres::Error> {
    conn.query(
        "SELECT t.issue_id,
                coalesce(t.runtime_id, CASE WHEN t.status = 'queued' THEN a.runtime_id END) AS rt,
                bool_or(t.status IN ('dispatched', 'running')),
                bool_or(t.status = 'queued'),
                max(coalesce(t.completed_at, t.started_at, t.dispatched_at, t.created_at)),
                max(t.completed_at),
                (array_agg(t.status ORDER BY t.completed_at DESC, t.status DESC)
                     FILTER (WHERE t.completed_at IS NOT NULL))[1]
         FROM agent_task_queue t LEFT JOIN agent a ON a.id = t.agent_id
         WHERE t.issue_id = ANY($1)
           AND ($2::uuid IS NULL OR t.workspace_id = $2)
         GROUP BY t.issue_id, rt",
        &[&issue_ids, &workspace],
    )?
    .iter()
    .map(|r| {
        let at: Option<Timestamp> = r.try_get(5)?;
        let status: Option<TaskStatus> = r.try_get(6)?;
        Ok(IssueTasks {
            issue_id: r.try_get(0)?,
            runtime_id: r.try_get(1)?,
            active: r.try_get(2)?,
            queued: r.try_get(3)?,
            updated_at: r.try_get(4)?,
            last_finished: at.zip(status),
        })
    })
    .collect()
}
