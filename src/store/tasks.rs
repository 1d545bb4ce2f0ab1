//! `agent_task_queue` rows: queueing, the atomic claim, state transitions
//! and the hourly activity of a runtime.

use crate::domain::{AgentId, RuntimeId, TaskId, TaskStatus, Timestamp, UserId, WorkspaceId};
use crate::store::sweeps::FailedTask;
use serde::Serialize;
use serde_json::Value;

use super::{dispatch, Conn, Result};

#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub id: TaskId,
    pub workspace_id: WorkspaceId,
    pub agent_id: Option<AgentId>,
    pub runtime_id: Option<RuntimeId>,
    pub issue_id: Option<String>,
    pub status: TaskStatus,
    pub priority: i64,
    pub prompt: String,
    pub dispatched_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub result: Option<Value>,
    pub error: Option<String>,
    /// Who queued it, while they exist.
    pub created_by: Option<UserId>,
    pub created_at: Timestamp,
    /// The agent's session and work directory, as the daemon pinned them.
    pub session_id: Option<String>,
    pub work_dir: Option<String>,
    /// While dispatched: the daemon is preparing it until then.
    pub prepare_lease_expires_at: Option<Timestamp>,
    /// What the daemon reported on acknowledging a cancellation.
    pub branch_name: Option<String>,
    pub durable_work_dir: Option<String>,
    pub failure_reason: Option<String>,
    pub cancel_acked_at: Option<Timestamp>,
    /// Which run of the work this is: 1 for the first.
    pub attempt: i64,
    /// The run this one repeats (a retry or a rerun).
    pub parent_task_id: Option<TaskId>,
    /// Why a queued task is not being claimed (`budget_exceeded`), set by
    /// [`super::budgets::mark_blocked`] where a reply shows it; `null`
    /// otherwise.
    pub blocked_reason: Option<super::budgets::BlockedReason>,
}

/// The condition a claim puts on the runtime `$runtime` (an SQL
/// expression) a task would be dispatched to: none of its three capacity
/// limits is reached. Each counts the tasks dispatched or running: on the
/// runtime (`agent_runtime.max_concurrent_tasks`), on its machine (every
/// runtime of its owner with its daemon id, in any workspace:
/// `machine_limit`), and in its workspace (`workspace.max_concurrent_tasks`).
/// A NULL limit (no `machine_limit` row) is no limit and costs one
/// primary-key probe. The agent's own limit is checked beside it.
macro_rules! runtime_has_room {
    ($runtime:literal) => {
        concat!(
            "NOT EXISTS (SELECT 1 FROM agent_runtime cap_r WHERE cap_r.id = ",
            $runtime,
            " AND ((cap_r.max_concurrent_tasks IS NOT NULL
                  AND (SELECT count(*) FROM agent_task_queue cap_b
                       WHERE cap_b.runtime_id = cap_r.id
                         AND cap_b.status IN ('dispatched', 'running'))
                      >= cap_r.max_concurrent_tasks)
              OR EXISTS (SELECT 1 FROM machine_limit cap_m
                  WHERE cap_m.owner_id = cap_r.owner_id AND cap_m.daemon_id = cap_r.daemon_id
                    AND (SELECT count(*) FROM agent_runtime cap_mr
                         JOIN agent_task_queue cap_b ON cap_b.runtime_id = cap_mr.id
                         WHERE cap_mr.owner_id = cap_m.owner_id
                           AND cap_mr.daemon_id = cap_m.daemon_id
                           AND cap_b.status IN ('dispatched', 'running'))
                        >= cap_m.max_concurrent_tasks)
              OR EXISTS (SELECT 1 FROM workspace cap_w
                  WHERE cap_w.id = cap_r.workspace_id AND cap_w.max_concurrent_tasks IS NOT NULL
                    AND (SELECT count(*) FROM agent_task_queue cap_b
                         WHERE cap_b.workspace_id = cap_w.id
                           AND cap_b.status IN ('dispatched', 'running'))
                        >= cap_w.max_concurrent_tasks)))"
        )
    };
}
pub(crate) use runtime_has_room;

/// The condition under which the runtime `$runtime` (an SQL expression)
/// takes the queued tasks of agent `a` as one of its fallbacks (listed in
/// `agent_fallback`): the agent is bound to a runtime of its own, its
/// owner may still bind agents to `$runtime` (rule 1, checked on every
/// claim: the runtime's owner, or a workspace-visible runtime and an owner
/// who manages the workspace), and its own runtime cannot take them: a
/// task of it failed there for a quota or rate limit after `$cutoff`, or
/// it has been offline since `$cutoff` or earlier. `$cutoff` is the
/// engine's SQL for the claim's "now" less the agent's
/// `fallback_after_secs`, as a time comparable with the stored ones.
macro_rules! fallback_open {
    ($runtime:literal, $cutoff:literal) => {
        concat!(
            "(a.runtime_id IS NOT NULL
             AND EXISTS (SELECT 1 FROM agent_runtime fr
                 WHERE fr.id = ",
            $runtime,
            " AND fr.workspace_id = a.workspace_id AND fr.owner_id IS NOT NULL
                   AND (fr.owner_id = a.owner_id
                        OR (fr.visibility = 'workspace'
                            AND EXISTS (SELECT 1 FROM member fm
                                WHERE fm.workspace_id = a.workspace_id
                                  AND fm.user_id = a.owner_id
                                  AND fm.role IN ('owner', 'admin')))))
             AND (a.quota_failed_at > ",
            $cutoff,
            "
                  OR EXISTS (SELECT 1 FROM agent_runtime p
                      WHERE p.id = a.runtime_id AND p.status = 'offline'
                        AND p.offline_since <= ",
            $cutoff,
            ")))"
        )
    };
}
pub(crate) use fallback_open;

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
    pub workspace: WorkspaceId,
    pub agent: AgentId,
    pub prompt: &'a str,
    pub priority: i64,
    pub issue_id: Option<&'a str>,
    /// Who queued it (a retry: whoever queued the run it repeats, while
    /// they exist).
    pub created_by: Option<UserId>,
    /// 1 for new work; a retry or rerun counts on from the run it repeats.
    pub attempt: i64,
    pub parent: Option<TaskId>,
}

/// Bytes of task text (prompt, result, error) one listing page may carry;
/// a page ends early rather than pass it.
pub const PAGE_BYTES: usize = 4 * 1024 * 1024;

/// What a transition records beside the new status (each kept as it was
/// when `None`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome<'a> {
    /// The result a daemon reported on completion (JSON text).
    pub result: Option<&'a str>,
    /// Why it failed, for people to read.
    pub error: Option<&'a str>,
    /// Why it failed or was cancelled, as a code (see [`reasons`]).
    pub reason: Option<&'a str>,
}

/// The codes of `failure_reason`: why a task failed or was cancelled. A
/// daemon may report a code of its own on `fail` (such as
/// `agent_error.provider_quota_limit`).
pub mod reasons {
    /// The daemon reported a failure without a code of its own.
    pub const AGENT_ERROR: &str = "agent_error";
    /// Its runtime went offline and its daemon did not come back within
    /// the reconnect grace.
    pub const RUNTIME_RECONNECT_TIMEOUT: &str = "runtime_reconnect_timeout";
    /// Queued for a runtime that stayed offline past the queued TTL.
    pub const QUEUED_EXPIRED: &str = "queued_expired";
    /// Dispatched, and never started in time.
    pub const DISPATCH_TIMEOUT: &str = "dispatch_timeout";
    /// Running for longer than allowed.
    pub const RUNNING_TIMEOUT: &str = "running_timeout";
    /// Its daemon restarted while it was in flight (`recover-orphans`).
    pub const RUNTIME_RECOVERY: &str = "runtime_recovery";
    /// Cancelled by a person.
    pub const CANCELLED_BY_USER: &str = "cancelled_by_user";
    /// Cancelled because its agent was archived.
    pub const AGENT_ARCHIVED: &str = "agent_archived";

    /// The failures of the infrastructure, not of the work: retried while
    /// the agent's `max_attempts` allows.
    pub const RETRIED: &[&str] = &[
        RUNTIME_RECONNECT_TIMEOUT,
        DISPATCH_TIMEOUT,
        RUNTIME_RECOVERY,
    ];

    /// Longest code a daemon may report.
    pub const MAX_BYTES: usize = 128;

    /// Whether `code` is a well-formed code: lower-case words joined by
    /// `_`, in dot-separated parts (`agent_error.provider_quota_limit`).
    pub fn well_formed(code: &str) -> bool {
        code.len() <= MAX_BYTES
            && code.split('.').all(|part| {
                part.starts_with(|c: char| c.is_ascii_lowercase())
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            })
    }
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
    pub fn from_states(self) -> &'static [TaskStatus] {
        use TaskStatus::*;
        match self {
            Transition::Start => &[Dispatched],
            Transition::Complete => &[Running],
            Transition::Fail => &[Dispatched, Running],
            Transition::Cancel => &[Queued, Dispatched, Running],
        }
    }

    pub fn to_state(self) -> TaskStatus {
        match self {
            Transition::Start => TaskStatus::Running,
            Transition::Complete => TaskStatus::Completed,
            Transition::Fail => TaskStatus::Failed,
            Transition::Cancel => TaskStatus::Cancelled,
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

#[derive(Debug, Clone, Serialize)]
pub struct HourCount {
    pub hour: i64,
    pub count: i64,
}

/// How long a prepare lease lasts: the daemon renews it every 15 s while it
/// prepares a claimed task, so the lease lapses after three missed renewals.
pub const PREPARE_LEASE_SECS: i64 = 45;

/// What a daemon reports when it acknowledges a cancellation.
#[derive(Debug, Default)]
pub struct CancelAck {
    pub branch_name: Option<String>,
    pub durable_work_dir: Option<String>,
    pub error_message: Option<String>,
    pub failure_reason: Option<String>,
}

/// Why [`fail_orphans`] fails a task.
pub const ORPHAN_ERROR: &str = "daemon restarted while task was in flight";

/// The tasks carrying one issue that ran, run or wait on one runtime.
#[derive(Debug, Clone)]
pub struct IssueTasks {
    pub issue_id: String,
    /// Where they run (queued ones: the runtime of their agent).
    pub runtime_id: Option<RuntimeId>,
    /// Some of them are dispatched or running.
    pub active: bool,
    /// Some of them are queued.
    pub queued: bool,
    /// The latest thing that happened to any of them.
    pub updated_at: Timestamp,
    /// When the last of them finished, and how (completed, failed,
    /// cancelled).
    pub last_finished: Option<(Timestamp, TaskStatus)>,
}

///
/// Inside a write the row is locked (`FOR UPDATE`) where the engine has row
/// locks: what the write decides from it (its status, its runtime) holds
/// until it commits, and a change another transaction has not committed
/// yet is waited for and seen.
pub fn get(conn: &Conn<'_>, id: TaskId) -> Result<Option<Task>> {
    let lock = conn.writing();
    dispatch!(conn, tasks::get(id, lock))
}

pub fn insert(conn: &Conn<'_>, new: &NewTask<'_>) -> Result<Task> {
    dispatch!(conn, tasks::insert(new))
}

/// How many of `agent`'s tasks are queued (read off the
/// (agent_id, status, …) index, at most [`MAX_QUEUED_PER_AGENT`] entries).
pub fn count_queued(conn: &Conn<'_>, agent: AgentId) -> Result<i64> {
    dispatch!(conn, tasks::count_queued(agent))
}

/// One page of an agent's tasks, newest first (ties by id, descending):
/// up to `limit` rows after the one whose (created_at, id) is `after`, and
/// whether the page ended early at [`PAGE_BYTES`].
pub fn list_for_agent(
    conn: &Conn<'_>,
    agent: AgentId,
    after: Option<(Timestamp, TaskId)>,
    limit: usize,
) -> Result<(Vec<Task>, bool)> {
    dispatch!(conn, tasks::list_for_agent(agent, after, limit))
}

/// The first [`PENDING_LIMIT`] of the tasks dispatched to `runtime` and
/// the queued tasks of the agents bound to it, in claim order (dispatched
/// ones first): a runtime may have thousands queued, and a daemon only
/// needs the head of its queue.
pub fn pending_for_runtime(conn: &Conn<'_>, runtime: RuntimeId) -> Result<Vec<Task>> {
    dispatch!(conn, tasks::pending_for_runtime(runtime))
}

/// Dispatches the next task for `runtime`: the highest-priority, oldest
/// queued task of a non-archived agent bound to it whose dispatched +
/// running tasks are below its max_concurrent_tasks. The claim is one
/// conditional write (with the agent's row lock on an engine that needs
/// one): the task is dispatched only if, on the row being written, it is
/// still queued and its agent still has a free slot, so two concurrent
/// claims can never take one task or overrun an agent's limit. `None` when nothing is claimable (or,
/// on an engine with concurrent writers, a concurrent claim took the task
/// this one picked: the daemon claims again).
pub fn claim(conn: &Conn<'_>, runtime: RuntimeId) -> Result<Option<Task>> {
    claim_any(conn, &[runtime])
}

/// [`claim`] across several runtimes (a daemon's batch claim): the
/// highest-priority, oldest claimable task of any of them, dispatched to
/// the runtime its agent is bound to.
pub fn claim_any(conn: &Conn<'_>, runtimes: &[RuntimeId]) -> Result<Option<Task>> {
    dispatch!(conn, tasks::claim_any(runtimes))
}

/// Applies `transition` to the task, recording the result or error, only
/// while the task is in one of the transition's
/// [`from_states`](Transition::from_states): the condition is part of the
/// write, so a concurrent transition is never overwritten. `None` when the
/// task is not (any more) in such a state.
pub fn apply(
    conn: &Conn<'_>,
    id: TaskId,
    transition: Transition,
    outcome: &Outcome<'_>,
) -> Result<Option<Task>> {
    dispatch!(conn, tasks::apply(id, transition, outcome))
}

/// Queues `task`'s work again for its agent, as its next attempt: the
/// same prompt, priority and issue, `attempt` one more, `parent_task_id`
/// the task. The caller has checked the agent may take it.
pub fn requeue(conn: &Conn<'_>, task: &Task, agent: AgentId, by: Option<UserId>) -> Result<Task> {
    insert(
        conn,
        &NewTask {
            workspace: task.workspace_id,
            agent,
            prompt: &task.prompt,
            priority: task.priority,
            issue_id: task.issue_id.as_deref(),
            created_by: by,
            attempt: task.attempt + 1,
            parent: Some(task.id),
        },
    )
}

/// Cancels every unfinished task of an agent; returns the cancelled ids.
pub fn cancel_for_agent(conn: &Conn<'_>, agent: AgentId) -> Result<Vec<TaskId>> {
    dispatch!(conn, tasks::cancel_for_agent(agent))
}

/// How many of the runtime's tasks started in each UTC quarter hour that
/// has any (its start instant, count): a local hour of the day in any zone
/// is a whole number of quarter hours, whatever the date's offset.
pub fn start_quarters(
    conn: &Conn<'_>,
    runtime: RuntimeId,
) -> Result<Vec<(chrono::DateTime<chrono::Utc>, i64)>> {
    dispatch!(conn, tasks::start_quarters(runtime))
}

/// Sets the prepare lease of a task to end at `until`, only while it is
/// dispatched to `runtime` (checked by the write itself); `None` otherwise.
pub fn set_prepare_lease(
    conn: &Conn<'_>,
    id: TaskId,
    runtime: RuntimeId,
    until: Timestamp,
) -> Result<Option<Task>> {
    dispatch!(conn, tasks::set_prepare_lease(id, runtime, until))
}

/// Records the agent's session and work directory; an absent one keeps
/// what was pinned before.
pub fn pin_session(
    conn: &Conn<'_>,
    id: TaskId,
    session_id: Option<&str>,
    work_dir: Option<&str>,
) -> Result<()> {
    dispatch!(conn, tasks::pin_session(id, session_id, work_dir))
}

/// Records the acknowledgement of a cancelled task. Nothing already
/// recorded is overwritten, so a replayed ack changes nothing; a task that
/// is not cancelled is left alone (its own complete or fail report is the
/// one that counts). Returns whether the task was cancelled.
pub fn record_cancel_ack(
    conn: &Conn<'_>,
    id: TaskId,
    ack: &CancelAck,
    at: Timestamp,
) -> Result<bool> {
    dispatch!(conn, tasks::record_cancel_ack(id, ack, at))
}

/// Fails up to [`crate::store::sweeps::BATCH`] tasks dispatched to or running
/// on `runtime`, except those in `keep`: its daemon has restarted (or
/// registered again) and runs only the tasks it listed, so nothing runs the
/// others any more. A task that ended meanwhile is left as it ended.
/// With `dispatched_before`, tasks dispatched at or after it are kept too
/// (see [`RECONCILE_GRACE_SECS`]).
pub fn fail_orphans(
    conn: &Conn<'_>,
    runtime: RuntimeId,
    keep: &[TaskId],
    dispatched_before: Option<Timestamp>,
) -> Result<Vec<FailedTask>> {
    dispatch!(conn, tasks::fail_orphans(runtime, keep, dispatched_before))
}

/// A daemon that lists the tasks it still runs may not know yet of a task
/// it claimed a moment ago (the claim's reply still on its way): tasks
/// dispatched this recently are never failed for being left off a list.
/// An orphan among them meets the dispatch timeout instead.
pub const RECONCILE_GRACE_SECS: i64 = 30;

/// The `dispatched_before` of a reconciliation that starts now.
pub fn reconcile_cutoff() -> Timestamp {
    Timestamp::now() - chrono::Duration::seconds(RECONCILE_GRACE_SECS)
}

/// Most tasks [`active_on`] lists: far more than the agents of one runtime
/// may run at once (see `agent.max_concurrent_tasks`).
pub const MAX_ACTIVE_LISTED: i64 = 1000;

/// A task dispatched to or running on a runtime: still its daemon's own.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveTask {
    pub id: TaskId,
    pub runtime_id: RuntimeId,
    pub agent_id: Option<AgentId>,
    pub status: TaskStatus,
}

/// The tasks dispatched to or running on `runtime`, in creation order (of
/// their ids), at most [`MAX_ACTIVE_LISTED`] (far more than its agents may
/// run at once), read off the (runtime_id, status) index.
pub fn active_on(conn: &Conn<'_>, runtime: RuntimeId) -> Result<Vec<ActiveTask>> {
    let read: Result<Vec<ActiveTask>> = dispatch!(conn, tasks::active_on(runtime));
    let mut tasks = read?;
    tasks.sort_by_key(|t| t.id);
    Ok(tasks)
}

/// The tasks carrying any of `issue_ids` (in `workspace`, if given), one
/// row per (issue, runtime), read off the (issue_id, workspace_id) index.
pub fn issue_tasks(
    conn: &Conn<'_>,
    workspace: Option<WorkspaceId>,
    issue_ids: &[String],
) -> Result<Vec<IssueTasks>> {
    dispatch!(conn, tasks::issue_tasks(workspace, issue_ids))
}

/// How many tasks have each status (statuses with none are left out).
pub fn count_by_status(conn: &Conn<'_>) -> Result<Vec<(TaskStatus, i64)>> {
    dispatch!(conn, tasks::count_by_status())
}
