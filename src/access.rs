//! One function per access rule, run inside the request's database closure
//! so the check and the work see the same rows. Every "you may not see it"
//! answer is the same 404 as "it does not exist", so ids in other
//! workspaces cannot be probed.

use crate::store::Conn;

use crate::auth::Caller;
use crate::domain::{
    AgentId, Role, RuntimeId, TaskId, TaskStatus, UserId, Visibility, WorkspaceId,
};
use crate::error::ApiError;
use crate::store::{runtimes, workspaces};

fn runtime_not_found() -> ApiError {
    ApiError::not_found("runtime not found")
}

/// The role of `user` in `workspace`; 404 `workspace not found` for
/// non-members (the same answer as for a workspace that does not exist).
/// Run in the transaction that acts on it, so a change of role that
/// committed meanwhile counts.
pub fn member_role(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    user: UserId,
) -> Result<Role, ApiError> {
    workspaces::role_of(conn, workspace, user)?
        .ok_or_else(|| ApiError::not_found("workspace not found"))
}

/// Whether `caller` reaches `workspace` on the daemon API: a daemon token
/// its own workspace, a PAT user the workspaces they belong to.
pub fn daemon_reaches(
    conn: &Conn<'_>,
    caller: &Caller,
    workspace: WorkspaceId,
) -> Result<bool, ApiError> {
    Ok(match caller {
        // its minter must still be a member: removal revokes the token, and
        // this closes the race with a request already past authentication
        Caller::Daemon(daemon) => {
            daemon.workspace_id == workspace
                && match daemon.minted_by {
                    Some(user) => workspaces::role_of(conn, workspace, user)?.is_some(),
                    None => false,
                }
        }
        Caller::User { user_id } => workspaces::role_of(conn, workspace, *user_id)?.is_some(),
        // a task token is no daemon: it reaches its task only
        Caller::Task(_) => false,
    })
}

/// Nothing, if `caller` reaches `workspace` on the daemon API (see
/// [`daemon_reaches`]); 404 `workspace not found` otherwise.
pub fn require_daemon_workspace(
    conn: &Conn<'_>,
    caller: &Caller,
    workspace: WorkspaceId,
) -> Result<(), ApiError> {
    if daemon_reaches(conn, caller, workspace)? {
        Ok(())
    } else {
        Err(ApiError::not_found("workspace not found"))
    }
}

/// Whether a daemon-API caller acts for the machine behind `runtime`: a
/// daemon token minted for the runtime's daemon_id by the runtime's owner,
/// or a PAT of the runtime's owner while they are still a member. Being a
/// member of the workspace is not enough: a daemon acts for its owner only.
pub fn acts_for_runtime(
    conn: &Conn<'_>,
    caller: &Caller,
    runtime: &runtimes::Runtime,
) -> Result<bool, ApiError> {
    let Some(owner) = runtime.owner_id else {
        return Ok(false);
    };
    Ok(match caller {
        Caller::Daemon(daemon) => {
            daemon.workspace_id == runtime.workspace_id
                && runtime.daemon_id.as_deref() == Some(daemon.daemon_id.as_str())
                && daemon.minted_by == Some(owner)
                // removal revokes the member's tokens; this closes the race
                && workspaces::role_of(conn, runtime.workspace_id, owner)?.is_some()
        }
        Caller::User { user_id } => {
            *user_id == owner && workspaces::role_of(conn, runtime.workspace_id, owner)?.is_some()
        }
        Caller::Task(_) => false,
    })
}

/// The runtime `id`, if it exists and a daemon-API caller acts for it
/// (see [`acts_for_runtime`]).
pub fn daemon_runtime(
    conn: &Conn<'_>,
    caller: &Caller,
    id: RuntimeId,
) -> Result<Option<runtimes::Runtime>, ApiError> {
    let Some(runtime) = runtimes::get(conn, id)? else {
        return Ok(None);
    };
    let acts = acts_for_runtime(conn, caller, &runtime)?;
    Ok(acts.then_some(runtime))
}

/// [`daemon_runtime`], or 404 `runtime not found`.
pub fn require_daemon_runtime(
    conn: &Conn<'_>,
    caller: &Caller,
    id: RuntimeId,
) -> Result<runtimes::Runtime, ApiError> {
    daemon_runtime(conn, caller, id)?.ok_or_else(runtime_not_found)
}

/// The runtime `id` and the caller's role in its workspace, for members of
/// that workspace only.
pub fn require_member_runtime(
    conn: &Conn<'_>,
    user: UserId,
    id: RuntimeId,
) -> Result<(runtimes::Runtime, Role), ApiError> {
    let runtime = runtimes::get(conn, id)?.ok_or_else(runtime_not_found)?;
    let role =
        workspaces::role_of(conn, runtime.workspace_id, user)?.ok_or_else(runtime_not_found)?;
    Ok((runtime, role))
}

/// Whether `user` (with `role` in the runtime's workspace) may act on the
/// machine behind `runtime`: its owner, or a workspace owner/admin.
pub fn controls_runtime(runtime: &runtimes::Runtime, user: UserId, role: Role) -> bool {
    role.is_manager() || runtime.owner_id == Some(user)
}

/// Whether `user` (with `role` in the runtime's workspace) may bind agents
/// to `runtime`, so that its machine runs their tasks with its owner's CLI
/// login: the owner of a private runtime only (workspace owners and admins
/// included in the refusal); the owner or a workspace owner/admin for a
/// `workspace` one; nobody while it has no owner. A 403 says which.
pub fn require_bindable(
    runtime: &runtimes::Runtime,
    user: UserId,
    role: Role,
) -> Result<(), ApiError> {
    match (runtime.owner_id, runtime.visibility) {
        (None, _) => Err(ApiError::forbidden(
            "this runtime has no owner: a workspace owner or admin must claim it \
             (POST /api/runtimes/{id}/claim) before agents are bound to it",
        )),
        (Some(owner), _) if owner == user => Ok(()),
        (Some(_), Visibility::Private) => Err(ApiError::forbidden(
            "this runtime is private to its owner: only they can bind agents to it",
        )),
        (Some(_), Visibility::Workspace) if role.is_manager() => Ok(()),
        (Some(_), Visibility::Workspace) => Err(ApiError::forbidden(
            "only the runtime's owner or a workspace owner or admin can bind agents to it",
        )),
    }
}

fn agent_not_found() -> ApiError {
    ApiError::not_found("agent not found")
}

/// The agent `id` and the caller's role in its workspace, if the caller may
/// see it: a member, and the agent is workspace-visible, theirs, or they
/// manage the workspace. Anything else is 404.
pub fn require_agent(
    conn: &Conn<'_>,
    user: UserId,
    id: AgentId,
) -> Result<(crate::store::agents::Agent, Role), ApiError> {
    let agent = crate::store::agents::get(conn, id)?.ok_or_else(agent_not_found)?;
    let role = workspaces::role_of(conn, agent.workspace_id, user)?.ok_or_else(agent_not_found)?;
    let visible = agent.visibility == Visibility::Workspace
        || agent.owner_id == Some(user)
        || role.is_manager();
    if visible {
        Ok((agent, role))
    } else {
        Err(agent_not_found())
    }
}

/// Workspace owners/admins and the agent's owner may change an agent.
pub fn require_agent_editor(
    agent: &crate::store::agents::Agent,
    user: UserId,
    role: Role,
) -> Result<(), ApiError> {
    if role.is_manager() || agent.owner_id == Some(user) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only the agent's owner or a workspace owner or admin can change it",
        ))
    }
}

/// The task `id`, if a daemon-API caller acts for the runtime it was
/// dispatched to (or, while queued, the runtime its agent is bound to; a
/// finished task whose runtime is gone is nobody's to report on).
pub fn require_daemon_task(
    conn: &Conn<'_>,
    caller: &Caller,
    id: TaskId,
) -> Result<crate::store::tasks::Task, ApiError> {
    let not_found = || ApiError::not_found("task not found");
    if let Caller::Task(own) = caller {
        if own.task_id != id {
            return Err(not_found());
        }
        // its token is live only while the task runs: authentication saw
        // it live, and this is read again in the transaction that acts
        let task = crate::store::tasks::get(conn, id)?.ok_or_else(not_found)?;
        return if task.status.is_active() {
            Ok(task)
        } else {
            Err(ApiError::unauthorized(
                "task token is no longer valid: its task has ended",
            ))
        };
    }
    let task = crate::store::tasks::get(conn, id)?.ok_or_else(not_found)?;
    let runtime = match (task.runtime_id, task.agent_id) {
        (Some(runtime), _) => Some(runtime),
        (None, Some(agent)) if task.status == TaskStatus::Queued => {
            crate::store::agents::get(conn, agent)?.and_then(|a| a.runtime_id)
        }
        _ => None,
    };
    let Some(runtime) = runtime
        .map(|r| runtimes::get(conn, r))
        .transpose()?
        .flatten()
    else {
        return Err(not_found());
    };
    if acts_for_runtime(conn, caller, &runtime)? {
        Ok(task)
    } else {
        Err(not_found())
    }
}

/// The task `id`, its agent (while it exists) and `user`'s role in its
/// workspace; 404 `task not found` for a non-member.
fn member_task(
    conn: &Conn<'_>,
    user: UserId,
    id: TaskId,
) -> Result<
    (
        crate::store::tasks::Task,
        Option<crate::store::agents::Agent>,
        Role,
    ),
    ApiError,
> {
    let not_found = || ApiError::not_found("task not found");
    let task = crate::store::tasks::get(conn, id)?.ok_or_else(not_found)?;
    let role = workspaces::role_of(conn, task.workspace_id, user)?.ok_or_else(not_found)?;
    let agent = match task.agent_id {
        Some(agent) => crate::store::agents::get(conn, agent)?,
        None => None,
    };
    Ok((task, agent, role))
}

/// The task `id`, if `user` may read it: a member who may read its agent
/// (see [`require_agent`]), or who queued it; a task whose agent is gone
/// is for the workspace's owners/admins and whoever queued it. Anyone
/// else gets 404.
pub fn require_task_reader(
    conn: &Conn<'_>,
    user: UserId,
    id: TaskId,
) -> Result<crate::store::tasks::Task, ApiError> {
    let (task, agent, role) = member_task(conn, user, id)?;
    let readable = role.is_manager()
        || task.created_by == Some(user)
        || agent.is_some_and(|a| a.visibility == Visibility::Workspace || a.owner_id == Some(user));
    if readable {
        Ok(task)
    } else {
        Err(ApiError::not_found("task not found"))
    }
}

/// Who may cancel a task: whoever queued it, the agent's owner, the owner
/// of the runtime it runs on, and the workspace's owners/admins — among
/// members who may read the agent. Anyone else in the workspace gets 404
/// when the agent is hidden from them, 403 otherwise.
pub fn require_task_canceller(
    conn: &Conn<'_>,
    user: UserId,
    id: TaskId,
) -> Result<crate::store::tasks::Task, ApiError> {
    let not_found = || ApiError::not_found("task not found");
    let (task, agent, role) = member_task(conn, user, id)?;
    if role.is_manager() || task.created_by == Some(user) {
        return Ok(task);
    }
    let Some(agent) = agent else {
        return Err(ApiError::forbidden(
            "only whoever queued the task or a workspace owner or admin can cancel it",
        ));
    };
    if agent.visibility != Visibility::Workspace && agent.owner_id != Some(user) {
        return Err(not_found());
    }
    let runtime_owner = match task.runtime_id.or(agent.runtime_id) {
        Some(runtime) => runtimes::get(conn, runtime)?.and_then(|r| r.owner_id),
        None => None,
    };
    if agent.owner_id == Some(user) || runtime_owner == Some(user) {
        Ok(task)
    } else {
        Err(ApiError::forbidden(
            "only whoever queued the task, the agent's or runtime's owner, or a workspace owner or admin can cancel it",
        ))
    }
}
