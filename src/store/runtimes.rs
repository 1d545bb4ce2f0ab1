//! `agent_runtime` rows: registration upserts, heartbeats, listing, delete.

use crate::domain::{
    RuntimeId, RuntimeMode, RuntimeStatus, Timestamp, UserId, Visibility, WorkspaceId,
};
use serde::Serialize;
use serde_json::Value;

use super::{dispatch, Conn, Result};

/// A runtime as the API shows it (field for field the reference's shape).
#[derive(Debug, Clone, Serialize)]
pub struct Runtime {
    pub id: RuntimeId,
    pub workspace_id: WorkspaceId,
    pub daemon_id: Option<String>,
    pub name: String,
    pub runtime_mode: RuntimeMode,
    pub provider: String,
    pub status: RuntimeStatus,
    pub device_info: String,
    /// Always a JSON object; `{}` when empty.
    pub metadata: Value,
    pub owner_id: Option<UserId>,
    pub last_seen_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Why it is offline (`{code, detail?, repair?}`); null while online
    /// or when nobody said.
    pub offline_reason: Option<Value>,
    /// Who may bind agents to it: `private`, its owner only (the default);
    /// `workspace`, its owner and the workspace's owners and admins.
    pub visibility: Visibility,
    /// The name people gave it (at most 100 characters), shown beside the
    /// `name` its daemon registers; null when none.
    pub custom_name: Option<String>,
    /// Since when it is offline; null while online. Kept by the schema's
    /// triggers on every status change.
    pub offline_since: Option<Timestamp>,
    /// Most tasks dispatched to or running on it at once (its owner sets
    /// it); null: no limit of its own.
    pub max_concurrent_tasks: Option<i64>,
    /// Most tasks its machine (its daemon, with its owner, in any
    /// workspace) runs at once; null: no limit.
    pub machine_max_concurrent_tasks: Option<i64>,
}

/// A stored metadata value as the API shows it: the object, or `{}` for
/// anything else.
pub(super) fn metadata_object(value: Option<Value>) -> Value {
    match value {
        Some(Value::Object(map)) => Value::Object(map),
        _ => Value::Object(Default::default()),
    }
}

/// `{"code": code}`: an offline reason the server sets itself.
pub fn reason(code: &str) -> String {
    serde_json::json!({ "code": code }).to_string()
}

/// One runtime of a daemon's registration, already validated.
#[derive(Debug, Clone)]
pub struct Registration {
    pub workspace_id: WorkspaceId,
    pub daemon_id: String,
    pub provider: String,
    pub name: String,
    pub status: RuntimeStatus,
    pub device_info: String,
    /// JSON object text.
    pub metadata: String,
    /// The member the daemon acts for: the owner of a new row, and the
    /// only one who may re-register an existing one.
    pub owner: UserId,
    /// JSON object text; `None` for a runtime registered online.
    pub offline_reason: Option<String>,
}

/// What folding a machine's former registrations into a runtime moved.
#[derive(Debug, Default)]
pub struct Folded {
    /// The runtimes folded in, now deleted.
    pub runtimes: Vec<RuntimeId>,
    pub agents: usize,
    pub tasks: usize,
}

pub fn get(conn: &Conn<'_>, id: RuntimeId) -> Result<Option<Runtime>> {
    dispatch!(conn, runtimes::get(id))
}

/// One setting people change on a runtime (`PATCH /api/runtimes/{id}`).
#[derive(Debug, Clone, Copy)]
pub enum Setting<'a> {
    /// Who may bind agents to it.
    Visibility(Visibility),
    /// The name people gave it; `None` clears it.
    CustomName(Option<&'a str>),
    /// Its own capacity; `None` lifts it.
    Capacity(Option<i64>),
}

/// Changes one setting of the runtime, returning it as it now is; `None`
/// when it is gone.
pub fn set(
    conn: &Conn<'_>,
    id: RuntimeId,
    setting: Setting<'_>,
    now: Timestamp,
) -> Result<Option<Runtime>> {
    dispatch!(conn, runtimes::set(id, setting, now))
}

/// Sets (or with `None` lifts) the capacity of the machine `daemon_id` of
/// `owner`: every runtime it registered, in any workspace.
pub fn set_machine_capacity(
    conn: &Conn<'_>,
    owner: UserId,
    daemon_id: &str,
    max: Option<i64>,
    now: Timestamp,
) -> Result<()> {
    dispatch!(
        conn,
        runtimes::set_machine_capacity(owner, daemon_id, max, now)
    )
}

/// The runtimes one daemon registered in the workspace (one per agent CLI
/// it found: a few), by id.
pub fn of_machine(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    daemon_id: &str,
) -> Result<Vec<Runtime>> {
    dispatch!(conn, runtimes::of_machine(workspace, daemon_id))
}

/// Makes `owner` the owner of a runtime that has none (its owner left the
/// instance); `None` when it is gone or has an owner.
pub fn claim(
    conn: &Conn<'_>,
    id: RuntimeId,
    owner: UserId,
    now: Timestamp,
) -> Result<Option<Runtime>> {
    dispatch!(conn, runtimes::claim(id, owner, now))
}

/// Up to `limit` of a workspace's runtimes (optionally one owner's), oldest
/// first (ties by id), after the row whose (created_at, id) is `after`.
pub fn list(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    owner: Option<UserId>,
    after: Option<(Timestamp, RuntimeId)>,
    limit: usize,
) -> Result<Vec<Runtime>> {
    dispatch!(conn, runtimes::list(workspace, owner, after, limit))
}

/// Inserts or updates the runtime keyed by (workspace, daemon_id, provider)
/// and returns it; the id and the owner of an existing row never change.
/// `None` when the row exists and belongs to someone else (nothing is
/// written then).
pub fn upsert(conn: &Conn<'_>, reg: &Registration) -> Result<Option<Runtime>> {
    dispatch!(conn, runtimes::upsert(reg))
}

/// Whether the runtime keyed by (workspace, daemon_id, provider) exists
/// (an index lookup).
pub fn exists(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    daemon_id: &str,
    provider: &str,
) -> Result<bool> {
    dispatch!(conn, runtimes::exists(workspace, daemon_id, provider))
}

/// Whether `workspace` has a runtime of `daemon_id` owned by anyone but
/// `owner` (or by nobody): a range on the (workspace, daemon_id, provider)
/// index.
pub fn daemon_owned_by_other(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    daemon_id: &str,
    owner: UserId,
) -> Result<bool> {
    dispatch!(
        conn,
        runtimes::daemon_owned_by_other(workspace, daemon_id, owner)
    )
}

/// How many runtimes `workspace` holds: a counter the schema's triggers
/// keep, so this is one row read however large the fleet.
pub fn count_in_workspace(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<i64> {
    dispatch!(conn, runtimes::count_in_workspace(workspace))
}

/// Moves agents from this machine's old offline registrations to `target`:
/// runtimes of the same workspace, provider and owner whose daemon_id is
/// literally `<daemon_id>-` followed by anything (a profile suffix).
///
/// The prefix is a range on the UNIQUE(workspace_id, daemon_id, provider)
/// index — `daemon_id >= '<id>-' AND daemon_id < '<id>.'` ('.' follows '-'
/// in byte order) — so the cost follows the matching rows, not the size of
/// the fleet or of the owner's runtimes (`+owner_id` keeps the planner off
/// the owner index); `%` and `_` in ids are plain characters. Returns how
/// many agents moved.
pub fn migrate_agents(conn: &Conn<'_>, target: &Runtime) -> Result<usize> {
    dispatch!(conn, runtimes::migrate_agents(target))
}

/// Folds the runtimes this machine registered under its former daemon ids
/// (`legacy`, hostnames, compared case-insensitively as hostnames drift in
/// case) into `target`: those of the same workspace, provider and owner.
/// Their agents, their open tasks and their daemon's usage reports move to
/// `target`, then the old rows are deleted; finished tasks stay as history
/// (their runtime becomes NULL). Anyone else's runtimes are left alone.
pub fn fold_legacy(conn: &Conn<'_>, target: &Runtime, legacy: &[String]) -> Result<Folded> {
    dispatch!(conn, runtimes::fold_legacy(target, legacy))
}

/// Marks a runtime online and seen now (no longer offline for any
/// reason). `false` when it does not exist.
pub fn heartbeat(conn: &Conn<'_>, id: RuntimeId) -> Result<bool> {
    dispatch!(conn, runtimes::heartbeat(id))
}

/// Marks a runtime offline for `reason` (JSON object text); it stays, with
/// its agents, for the daemon's return.
pub fn set_offline(conn: &Conn<'_>, id: RuntimeId, reason: &str) -> Result<()> {
    dispatch!(conn, runtimes::set_offline(id, reason))
}

/// Holds the runtime's row against concurrent writers until the
/// transaction ends, where the engine has row locks: binding an agent to
/// it (whose reference share-locks the row) waits, so a delete that checked
/// its agents deletes the runtime with exactly those.
pub fn lock(conn: &Conn<'_>, id: RuntimeId) -> Result<()> {
    dispatch!(conn, runtimes::lock(id))
}

/// Unbinds every agent of the runtime, archived ones too (`runtime_id`
/// NULL): they keep their settings and history. Returns how many.
pub fn unbind_agents(conn: &Conn<'_>, id: RuntimeId, now: Timestamp) -> Result<usize> {
    dispatch!(conn, runtimes::unbind_agents(id, now))
}

pub fn count_active_agents(conn: &Conn<'_>, id: RuntimeId) -> Result<i64> {
    dispatch!(conn, runtimes::count_active_agents(id))
}

/// Deletes a runtime and its archived agents; 409 while an active agent is
/// bound to it. Task history keeps its rows (their runtime/agent become
/// NULL through the schema's ON DELETE SET NULL).
/// The agents that keep the runtime from being deleted (not archived):
/// `(id, name)`, oldest first, at most `limit`.
pub fn active_agents(
    conn: &Conn<'_>,
    id: RuntimeId,
    limit: i64,
) -> Result<Vec<(crate::domain::AgentId, String)>> {
    dispatch!(conn, runtimes::active_agents(id, limit))
}

pub fn delete(conn: &Conn<'_>, id: RuntimeId) -> Result<()> {
    dispatch!(conn, runtimes::delete(id))
}

/// Moves an online runtime's last_seen_at forward to `at` (a buffered
/// heartbeat). A runtime swept offline meanwhile stays offline: its next
/// heartbeat brings it back through [`heartbeat`].
pub fn touch_seen(conn: &Conn<'_>, id: RuntimeId, at: Timestamp) -> Result<()> {
    dispatch!(conn, runtimes::touch_seen(id, at))
}

/// How many runtimes have each status (statuses with none are left out).
pub fn count_by_status(conn: &Conn<'_>) -> Result<Vec<(RuntimeStatus, i64)>> {
    dispatch!(conn, runtimes::count_by_status())
}
