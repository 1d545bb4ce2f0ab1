//! Tasks failed in bulk — by the sweeper, or by a daemon that restarted
//! and left orphans — with their agents' statuses reconciled in the same
//! transaction and the events to publish once it commits. A failure of the
//! infrastructure ([`reasons::RETRIED`]) is retried in that transaction:
//! the work is queued again as a new task (its next `attempt`, with
//! `parent_task_id`) while the agent's `max_attempts` allows, the agent is
//! not archived and its queue has room.

use std::collections::{BTreeSet, HashMap};

use crate::domain::{AgentId, AgentStatus, WorkspaceId};
use crate::events::{Audience, EventBus};
use crate::store::agents;
use crate::store::sweeps::FailedTask;
use crate::store::tasks::{self, reasons, Task};
use crate::store::Conn;
use crate::store::Error;

/// Tasks failed in one transaction, with what to publish once it commits.
pub struct Failures {
    pub failed: Vec<FailedTask>,
    /// (workspace, agent, new status) of agents whose status changed
    statuses: Vec<(WorkspaceId, AgentId, AgentStatus)>,
    audiences: HashMap<AgentId, Audience>,
    /// The tasks queued to retry failed ones.
    pub retries: Vec<Task>,
}

impl Failures {
    /// Reconciles the status of the failed tasks' agents, in the
    /// transaction that failed them.
    pub fn settle(conn: &Conn<'_>, failed: Vec<FailedTask>) -> Result<Failures, Error> {
        let agents: BTreeSet<(WorkspaceId, AgentId)> = failed
            .iter()
            .filter_map(|t| t.agent_id.map(|a| (t.workspace_id, a)))
            .collect();
        let mut statuses = Vec::new();
        let mut rows = HashMap::new();
        for (workspace, agent) in agents {
            if let Some(status) = agents::reconcile_status(conn, agent)? {
                statuses.push((workspace, agent, status));
            }
            if let Some(row) = agents::get(conn, agent)? {
                rows.insert(agent, row);
            }
        }
        let mut retries = Vec::new();
        for failed in &failed {
            let agent = failed.agent_id.and_then(|a| rows.get(&a));
            if let Some(retry) = retry(conn, failed, agent)? {
                retries.push(retry);
            }
        }
        let audiences = rows
            .iter()
            .map(|(id, row)| (*id, Audience::of_agent(row)))
            .collect();
        Ok(Failures {
            failed,
            statuses,
            audiences,
            retries,
        })
    }

    /// `task:failed` per task (`task:expired` for a queued task that
    /// expired), with its `failure_reason`, and `agent:status` per changed
    /// agent; a task whose agent is gone is shown to owners/admins only.
    pub fn publish(&self, events: &EventBus) {
        let audience = |agent: Option<AgentId>| {
            agent
                .and_then(|a| self.audiences.get(&a).copied())
                .unwrap_or(Audience::MANAGERS)
        };
        for task in &self.failed {
            let kind = match task.reason.as_deref() {
                Some(crate::store::tasks::reasons::QUEUED_EXPIRED) => "task:expired",
                _ => "task:failed",
            };
            events.task_ended(
                kind,
                audience(task.agent_id),
                task.workspace_id,
                task.id,
                task.agent_id,
                task.reason.as_deref(),
            );
        }
        for (workspace, agent, status) in &self.statuses {
            events.agent_status(audience(Some(*agent)), *workspace, *agent, *status);
        }
        for retry in &self.retries {
            events.retried(audience(retry.agent_id), retry);
        }
    }
}

/// Queues `failed` again if its failure is the infrastructure's and its
/// agent (read once per batch by [`Failures::settle`]) has attempts left.
fn retry(
    conn: &Conn<'_>,
    failed: &FailedTask,
    agent: Option<&agents::Agent>,
) -> Result<Option<Task>, Error> {
    if !failed
        .reason
        .as_deref()
        .is_some_and(|r| reasons::RETRIED.contains(&r))
    {
        return Ok(None);
    }
    let (Some(agent), Some(task)) = (agent, tasks::get(conn, failed.id)?) else {
        return Ok(None);
    };
    // an unbound agent's retry would wait for no runtime
    if agent.archived_at.is_some()
        || agent.runtime_id.is_none()
        || task.attempt >= agent.max_attempts
        || tasks::count_queued(conn, agent.id)? >= tasks::MAX_QUEUED_PER_AGENT
    {
        return Ok(None);
    }
    Ok(Some(tasks::requeue(
        conn,
        &task,
        agent.id,
        task.created_by,
    )?))
}
