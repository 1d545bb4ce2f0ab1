//! Token usage: per-task usage with its workspace and runtime rollups, and
//! the daily totals older daemons report per runtime.

use crate::domain::{RuntimeId, TaskId, Timestamp, WorkspaceId};
use serde::Serialize;

use super::{dispatch, Conn, Result};

/// Token counts of one provider/model, validated by the API layer
/// (0..=2^53 each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageEntry {
    pub provider: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
}

/// One bucket of workspace usage: a date (daily) or an hour (hourly).
#[derive(Debug, Clone)]
pub struct Bucket {
    pub key: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub task_count: i64,
}

/// Where a runtime's usage row comes from: what an older daemon reported
/// for its runtime (`runtime_report`), or the usage of the tasks that ran
/// on it (`task_usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    RuntimeReport,
    TaskUsage,
}

/// A runtime's usage of one (date, provider, model).
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeUsage {
    pub runtime_id: RuntimeId,
    pub date: String,
    pub provider: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    /// The providers' price in 1e-10 USD, when the daemon reported one.
    pub cost_usd_ticks: Option<i64>,
    pub source: UsageSource,
}

/// Stores a task's usage for (provider, model) without a reported cost;
/// see [`upsert_task_usage_with_cost`].
pub fn upsert_task_usage(
    conn: &Conn<'_>,
    task: TaskId,
    workspace: WorkspaceId,
    entry: &UsageEntry,
    at: Timestamp,
) -> Result<()> {
    upsert_task_usage_with_cost(conn, task, workspace, entry, None, at)
}

/// Stores a task's usage for (provider, model), replacing what was stored
/// (daemons send running totals), with its cost in 1e-10 USD if the daemon
/// reported one, and moves the workspace rollups and the rollup of the
/// task's runtime by the difference in the same transaction. The row keeps
/// the bucket of its first recording; a (task, model) pair counts once in
/// `task_count`. Every rollup write is one upsert that adds to what is
/// stored; the difference is read under the task's row lock, so
/// concurrent reports of one task never count a change twice.
pub fn upsert_task_usage_with_cost(
    conn: &Conn<'_>,
    task: TaskId,
    workspace: WorkspaceId,
    entry: &UsageEntry,
    cost_usd_ticks: Option<i64>,
    at: Timestamp,
) -> Result<()> {
    dispatch!(
        conn,
        usage::upsert_task_usage_with_cost(task, workspace, entry, cost_usd_ticks, at)
    )
}

/// UTC days `from..=to` (YYYY-MM-DD), newest first.
pub fn daily(conn: &Conn<'_>, workspace: WorkspaceId, from: &str, to: &str) -> Result<Vec<Bucket>> {
    dispatch!(conn, usage::daily(workspace, from, to))
}

/// UTC hours `from..to` (YYYY-MM-DDTHH, `to` excluded), oldest first.
pub fn hourly(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    from: &str,
    to: &str,
) -> Result<Vec<Bucket>> {
    dispatch!(conn, usage::hourly(workspace, from, to))
}

/// Stores a daemon's day total for (runtime, date, provider, model),
/// replacing what was stored.
pub fn upsert_runtime_usage(
    conn: &Conn<'_>,
    runtime: RuntimeId,
    date: &str,
    entry: &UsageEntry,
    at: Timestamp,
) -> Result<()> {
    dispatch!(conn, usage::upsert_runtime_usage(runtime, date, entry, at))
}

/// A runtime's usage on dates `>= from` from `source`, newest first.
pub fn runtime_usage(
    conn: &Conn<'_>,
    runtime: RuntimeId,
    from: &str,
    source: UsageSource,
) -> Result<Vec<RuntimeUsage>> {
    dispatch!(conn, usage::runtime_usage(runtime, from, source))
}
