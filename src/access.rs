//! One function per access rule, run inside the request's database closure
//! so the check and the work see the same rows. Every "you may not see it"
//! answer is the same 404 as "it does not exist", so ids in other
//! workspaces cannot be probed.

use rusqlite::Connection;

use crate::auth::Caller;
use crate::db::{runtimes, workspaces};
use crate::domain::{Id, Role};
use crate::error::ApiError;

fn runtime_not_found() -> ApiError {
    ApiError::not_found("runtime not found")
}

/// Whether `caller` reaches `workspace` on the daemon API: a daemon token
/// its own workspace, a PAT user the workspaces they belong to.
pub fn daemon_reaches(conn: &Connection, caller: &Caller, workspace: Id) -> Result<bool, ApiError> {
    Ok(match caller {
        Caller::Daemon(daemon) => daemon.workspace_id == workspace,
        Caller::User { user_id } => workspaces::role_of(conn, workspace, *user_id)?.is_some(),
    })
}

/// The runtime `id`, if a daemon-API caller may act on it.
pub fn require_daemon_runtime(
    conn: &Connection,
    caller: &Caller,
    id: Id,
) -> Result<runtimes::Runtime, ApiError> {
    let runtime = runtimes::get(conn, id)?.ok_or_else(runtime_not_found)?;
    if daemon_reaches(conn, caller, runtime.workspace_id)? {
        Ok(runtime)
    } else {
        Err(runtime_not_found())
    }
}

/// The runtime `id` and the caller's role in its workspace, for members of
/// that workspace only.
pub fn require_member_runtime(
    conn: &Connection,
    user: Id,
    id: Id,
) -> Result<(runtimes::Runtime, Role), ApiError> {
    let runtime = runtimes::get(conn, id)?.ok_or_else(runtime_not_found)?;
    let role =
        workspaces::role_of(conn, runtime.workspace_id, user)?.ok_or_else(runtime_not_found)?;
    Ok((runtime, role))
}

/// Whether `user` (with `role` in the runtime's workspace) may act on the
/// machine behind `runtime`: its owner, or a workspace owner/admin.
pub fn controls_runtime(runtime: &runtimes::Runtime, user: Id, role: Role) -> bool {
    role.is_manager() || runtime.owner_id == Some(user)
}

fn agent_not_found() -> ApiError {
    ApiError::not_found("agent not found")
}

/// The agent `id` and the caller's role in its workspace, if the caller may
/// see it: a member, and the agent is workspace-visible, theirs, or they
/// manage the workspace. Anything else is 404.
pub fn require_agent(
    conn: &Connection,
    user: Id,
    id: Id,
) -> Result<(crate::db::agents::Agent, Role), ApiError> {
    let agent = crate::db::agents::get(conn, id)?.ok_or_else(agent_not_found)?;
    let role = workspaces::role_of(conn, agent.workspace_id, user)?.ok_or_else(agent_not_found)?;
    let visible =
        agent.visibility == "workspace" || agent.owner_id == Some(user) || role.is_manager();
    if visible {
        Ok((agent, role))
    } else {
        Err(agent_not_found())
    }
}

/// Workspace owners/admins and the agent's owner may change an agent.
pub fn require_agent_editor(
    agent: &crate::db::agents::Agent,
    user: Id,
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

/// The task `id`, if a daemon-API caller reaches its workspace.
pub fn require_daemon_task(
    conn: &Connection,
    caller: &Caller,
    id: Id,
) -> Result<crate::db::tasks::Task, ApiError> {
    let not_found = || ApiError::not_found("task not found");
    let task = crate::db::tasks::get(conn, id)?.ok_or_else(not_found)?;
    if daemon_reaches(conn, caller, task.workspace_id)? {
        Ok(task)
    } else {
        Err(not_found())
    }
}
