//! Tasks failed in bulk — by the sweeper, or by a daemon that restarted
//! and left orphans — with their agents' statuses reconciled in the same
//! transaction and the events to publish once it commits.

use std::collections::{BTreeSet, HashMap};

use crate::domain::{AgentId, AgentStatus, WorkspaceId};
use crate::events::{Audience, EventBus};
use crate::store::agents;
use crate::store::sweeps::FailedTask;
use crate::store::Conn;
use crate::store::Error;

/// Tasks failed in one transaction, with what to publish once it commits.
pub struct Failures {
    pub failed: Vec<FailedTask>,
    /// (workspace, agent, new status) of agents whose status changed
    statuses: Vec<(WorkspaceId, AgentId, AgentStatus)>,
    audiences: HashMap<AgentId, Audience>,
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
        let mut audiences = HashMap::new();
        for (workspace, agent) in agents {
            if let Some(status) = agents::reconcile_status(conn, agent)? {
                statuses.push((workspace, agent, status));
            }
            if let Some(row) = agents::get(conn, agent)? {
                audiences.insert(agent, Audience::of_agent(&row));
            }
        }
        Ok(Failures {
            failed,
            statuses,
            audiences,
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
    }
}
