//! `agent` rows.

use crate::domain::{
    AgentId, AgentStatus, RuntimeId, RuntimeMode, Timestamp, UserId, Visibility, WorkspaceId,
};
use serde::Serialize;
use serde_json::Value;

use super::{dispatch, Conn, Result};

/// An agent as the API shows it (the reference's agent JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Agent {
    pub id: AgentId,
    pub workspace_id: WorkspaceId,
    /// Null once its runtime was deleted with its agents unbound: it keeps
    /// its settings and history, and nothing claims its tasks until it is
    /// bound to a runtime again.
    pub runtime_id: Option<RuntimeId>,
    pub name: String,
    pub description: String,
    pub instructions: String,
    pub avatar_url: Option<String>,
    pub runtime_mode: RuntimeMode,
    pub runtime_config: Value,
    pub visibility: Visibility,
    pub status: AgentStatus,
    pub max_concurrent_tasks: i64,
    /// Runs of a task at most, the first included: a failure of the
    /// infrastructure is retried while fewer have run.
    pub max_attempts: i64,
    pub owner_id: Option<UserId>,
    /// Kept for wire compatibility; agenthub has no skills.
    pub skills: Vec<Value>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
    pub archived_by: Option<UserId>,
    /// Runtimes that may take its queued tasks while its own cannot, in
    /// order (at most [`MAX_FALLBACKS`]); see [`FALLBACK_REASONS`].
    pub fallback_runtime_ids: Vec<RuntimeId>,
    /// How long its runtime must have been offline, or how recently a
    /// task of it failed there for a quota or rate limit, for a fallback
    /// runtime to take its tasks.
    pub fallback_after_secs: i64,
    /// When a task of it last failed on its own runtime for a provider's
    /// quota or rate limit ([`FALLBACK_REASONS`]).
    pub quota_failed_at: Option<Timestamp>,
}

/// Most fallback runtimes one agent names.
pub const MAX_FALLBACKS: usize = 5;

/// The failure codes that open an agent's fallback runtimes for
/// `fallback_after_secs` when a task of it fails with one on its own
/// runtime: the provider's quota or rate limit, as today's daemon reports
/// them (`agent_error.…`) and bare.
pub const FALLBACK_REASONS: &[&str] = &[
    "agent_error.provider_quota_limit",
    "agent_error.provider_capacity_or_rate_limit",
    "agent_error.provider_rate_limit",
    "provider_quota_limit",
    "provider_capacity_or_rate_limit",
    "provider_rate_limit",
];

/// The writable fields of an agent, validated by the API layer.
#[derive(Debug, Clone)]
pub struct AgentFields {
    pub runtime_id: Option<RuntimeId>,
    pub runtime_mode: RuntimeMode,
    pub name: String,
    pub description: String,
    pub instructions: String,
    pub avatar_url: Option<String>,
    /// JSON text.
    pub runtime_config: String,
    pub visibility: Visibility,
    pub status: AgentStatus,
    pub max_concurrent_tasks: i64,
    pub max_attempts: i64,
    pub fallback_after_secs: i64,
}

/// Which of a workspace's agents a list shows.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    pub workspace: WorkspaceId,
    pub viewer: UserId,
    /// Private agents of others too (owners and admins).
    pub see_private: bool,
    pub include_archived: bool,
}

/// Holds `agent`'s row against concurrent writers until the transaction
/// ends: queueing checks the agent is not archived and its queue not full,
/// and archiving cancels its open work, so the two take turns on an engine
/// with row locks.
pub fn lock(conn: &Conn<'_>, agent: AgentId) -> Result<()> {
    dispatch!(conn, agents::lock(agent))
}

///
/// Inside a write the row is locked (`FOR UPDATE`) where the engine has row
/// locks, as [`super::tasks::get`] does.
pub fn get(conn: &Conn<'_>, id: AgentId) -> Result<Option<Agent>> {
    let lock = conn.writing();
    dispatch!(conn, agents::get(id, lock))
}

/// Up to `limit` of the agents `filter.viewer` may see (workspace-visible
/// ones, their own, or all of them for `see_private`), oldest first (ties
/// by id), after the row whose (created_at, id) is `after`.
pub fn list(
    conn: &Conn<'_>,
    filter: Filter,
    after: Option<(Timestamp, AgentId)>,
    limit: usize,
) -> Result<Vec<Agent>> {
    dispatch!(conn, agents::list(filter, after, limit))
}

/// Every agent of `workspace`, archived ones included: its id, visibility
/// and owner, for naming agents on usage pages (see
/// `api::usage::AgentNames`). At most [`MAX_DIRECTORY`].
pub fn directory(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
) -> Result<Vec<(AgentId, Visibility, Option<UserId>)>> {
    dispatch!(conn, agents::directory(workspace))
}

/// Most agents [`directory`] returns: far more than a workspace has.
pub const MAX_DIRECTORY: i64 = 100_000;

pub fn insert(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    owner: UserId,
    fields: &AgentFields,
) -> Result<Agent> {
    dispatch!(conn, agents::insert(workspace, owner, fields))
}

pub fn update(conn: &Conn<'_>, id: AgentId, fields: &AgentFields) -> Result<Agent> {
    dispatch!(conn, agents::update(id, fields))
}

/// Replaces the agent's fallback runtimes with `runtimes`, in that order
/// (checked by the caller: at most [`MAX_FALLBACKS`], distinct, bindable).
pub fn set_fallbacks(conn: &Conn<'_>, id: AgentId, runtimes: &[RuntimeId]) -> Result<()> {
    dispatch!(conn, agents::set_fallbacks(id, runtimes))
}

/// Records that a task of the agent failed on its own runtime for a
/// quota or rate limit at `at` (see [`FALLBACK_REASONS`]).
pub fn mark_quota_failed(conn: &Conn<'_>, id: AgentId, at: Timestamp) -> Result<()> {
    dispatch!(conn, agents::mark_quota_failed(id, at))
}

/// Archives the agent (`by` who) or restores it (`None`), only if it is
/// not archived, respectively archived, when the row is written; `None`
/// when it already was (a concurrent archive or restore won).
pub fn set_archived(conn: &Conn<'_>, id: AgentId, by: Option<UserId>) -> Result<Option<Agent>> {
    dispatch!(conn, agents::set_archived(id, by))
}

/// Sets the agent's status to `working` while it has dispatched or running
/// tasks and `idle` otherwise. Returns the new status when it changed.
pub fn reconcile_status(conn: &Conn<'_>, id: AgentId) -> Result<Option<AgentStatus>> {
    dispatch!(conn, agents::reconcile_status(id))
}
