//! Token usage: per-task usage with its workspace and runtime rollups, and
//! the daily totals older daemons report per runtime.

use crate::domain::{AgentId, RuntimeId, TaskId, Timestamp, WorkspaceId};
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
    let counts = [
        entry.input_tokens,
        entry.output_tokens,
        entry.cache_read_tokens,
        entry.cache_write_tokens,
    ];
    // the task's row lock before the reads below: the totals this write
    // replaces and the rollups' deltas it derives from them stay exact
    // while other reports of the task wait, on any engine
    let place: Result<Option<TaskPlace>> = dispatch!(conn, usage::lock_task(task));
    let place = place?;
    let old: Result<Option<StoredTaskUsage>> =
        dispatch!(conn, usage::stored_task_usage(task, entry));
    let old = old?;
    let new_task = match old {
        Some(_) => false,
        None => {
            let used: Result<bool> = dispatch!(conn, usage::task_used_model(task, &entry.model));
            !used?
        }
    };
    let written: Result<()> = dispatch!(
        conn,
        usage::write_task_usage(task, entry, cost_usd_ticks, at)
    );
    written?;
    let before = old.as_ref().map(|o| (o.counts, o.cost));
    let (delta, cost_delta, bucket) = match old {
        Some(old) => {
            let delta: [i64; 4] = std::array::from_fn(|i| counts[i].saturating_sub(old.counts[i]));
            let cost = match (cost_usd_ticks, old.cost) {
                (None, None) => None,
                (new, old) => Some(new.unwrap_or(0).saturating_sub(old.unwrap_or(0))),
            };
            (delta, cost, old.created_at)
        }
        None => (counts, cost_usd_ticks, at),
    };
    let rolled: Result<()> = dispatch!(
        conn,
        usage::add_to_workspace_rollups(workspace, &entry.model, bucket, delta, new_task)
    );
    rolled?;
    if let Some(place) = place {
        let day = day_of(bucket);
        let rolled: Result<()> = dispatch!(
            conn,
            usage::add_to_runtime_rollup(place.runtime, &day, entry, delta, cost_delta)
        );
        rolled?;
        let quarter = QuarterDelta::between(before, (counts, cost_usd_ticks), new_task);
        let rolled: Result<()> = dispatch!(
            conn,
            usage::add_to_quarter_rollup(workspace, &place, bucket, entry, &quarter)
        );
        rolled?;
    }
    Ok(())
}

/// A runtime's usage of one (quarter hour, agent, provider, model) from
/// the quarter-hour rollup, counts in [`QUARTER_COLUMNS`] order.
#[derive(Debug, Clone)]
pub struct QuarterUsage {
    /// The UTC instant the quarter hour starts at.
    pub bucket: chrono::DateTime<chrono::Utc>,
    /// `None`: tasks without an agent (deleted since).
    pub agent_id: Option<AgentId>,
    pub provider: String,
    pub model: String,
    pub counts: [i64; 10],
}

/// A runtime's usage since `from` (a quarter-hour boundary: the start of
/// a local day in any zone), one row per quarter hour, agent, provider and
/// model; no order. A year of a busy runtime is a few thousand rows.
pub fn runtime_quarters(
    conn: &Conn<'_>,
    runtime: RuntimeId,
    from: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<QuarterUsage>> {
    dispatch!(conn, usage::runtime_quarters_since(runtime, from))
}

/// The nil UUID the quarter rollup keeps for "no agent", as `None`.
pub(super) fn agent_of(id: uuid::Uuid) -> Option<AgentId> {
    (!id.is_nil()).then(|| <AgentId as crate::domain::EntityId>::from_uuid(id))
}

/// Where a task ran: its runtime, and its agent (none once deleted).
pub(super) struct TaskPlace {
    pub runtime: RuntimeId,
    pub agent: Option<AgentId>,
}

/// The counted columns of `runtime_usage_quarter`, in [`QuarterDelta`]'s
/// order.
pub(super) const QUARTER_COLUMNS: [&str; 10] = [
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd_ticks",
    "uncosted_input_tokens",
    "uncosted_output_tokens",
    "uncosted_cache_read_tokens",
    "uncosted_cache_write_tokens",
    "task_count",
];

/// What one usage write moves a quarter rollup row by: tokens, reported
/// cost, the tokens of rows without a reported cost, and tasks.
pub(super) struct QuarterDelta {
    tokens: [i64; 4],
    cost: i64,
    uncosted: [i64; 4],
    tasks: i64,
}

impl QuarterDelta {
    /// From a usage row as it was (`None`: new) to what it is now.
    fn between(
        before: Option<([i64; 4], Option<i64>)>,
        now: ([i64; 4], Option<i64>),
        new_task: bool,
    ) -> QuarterDelta {
        let uncosted = |(counts, cost): ([i64; 4], Option<i64>)| match cost {
            Some(_) => [0; 4],
            None => counts,
        };
        let (old_counts, old_cost) = before.unwrap_or(([0; 4], None));
        let (old_uncosted, new_uncosted) = (uncosted((old_counts, old_cost)), uncosted(now));
        QuarterDelta {
            tokens: std::array::from_fn(|i| now.0[i].saturating_sub(old_counts[i])),
            cost: now.1.unwrap_or(0).saturating_sub(old_cost.unwrap_or(0)),
            uncosted: std::array::from_fn(|i| new_uncosted[i].saturating_sub(old_uncosted[i])),
            tasks: i64::from(new_task),
        }
    }

    pub(super) fn values(&self) -> [i64; 10] {
        let (t, u) = (self.tokens, self.uncosted);
        [
            t[0], t[1], t[2], t[3], self.cost, u[0], u[1], u[2], u[3], self.tasks,
        ]
    }
}

/// The UTC quarter hour `t` falls in, as the SQLite rollup's key
/// (`2026-11-23T19:45`).
pub(super) fn quarter_key(t: Timestamp) -> String {
    let utc = t.utc();
    format!(
        "{}:{:02}",
        utc.format("%Y-%m-%dT%H"),
        chrono::Timelike::minute(&utc) / 15 * 15
    )
}

/// A task_usage row as stored before a write.
pub(super) struct StoredTaskUsage {
    pub counts: [i64; 4],
    pub cost: Option<i64>,
    pub created_at: Timestamp,
}

/// The UTC day of `t` (`2026-11-23`): a key of the daily rollups.
pub(super) fn day_of(t: Timestamp) -> String {
    t.utc().format("%Y-%m-%d").to_string()
}

/// The UTC hour of `t` (`2026-11-23T19`): a key of the hourly rollup.
pub(super) fn hour_of(t: Timestamp) -> String {
    t.utc().format("%Y-%m-%dT%H").to_string()
}

/// A task's usage of one (provider, model), as the daemon reported it.
#[derive(Debug, Clone)]
pub struct TaskUsage {
    pub provider: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    /// The provider's price in 1e-10 USD, when the daemon reported one.
    pub cost_usd_ticks: Option<i64>,
    /// When its usage was first recorded.
    pub created_at: Timestamp,
}

/// A task's usage rows, by provider and model (a task reports at most
/// [`MAX_TASK_USAGE_ROWS`]).
pub fn of_task(conn: &Conn<'_>, task: TaskId) -> Result<Vec<TaskUsage>> {
    dispatch!(conn, usage::of_task(task))
}

/// Most (provider, model) rows [`of_task`] returns; a task uses a few.
pub const MAX_TASK_USAGE_ROWS: i64 = 1000;

/// UTC days `from..=to` (YYYY-MM-DD), in no order.
pub fn daily(conn: &Conn<'_>, workspace: WorkspaceId, from: &str, to: &str) -> Result<Vec<Bucket>> {
    dispatch!(conn, usage::daily(workspace, from, to))
}

/// Runs of consecutive UTC hours, each with the local date its hours fall
/// on, or none for hours left out: run `i` covers `bounds[i]..bounds[i + 1]`
/// (`dates.len() + 1` bounds, each the start of a UTC hour, ascending).
/// The caller decides which hour falls on which date (a time zone's rules);
/// the store only adds up.
#[derive(Debug, Clone, Default)]
pub struct HourRuns {
    pub bounds: Vec<chrono::DateTime<chrono::Utc>>,
    pub dates: Vec<Option<String>>,
}

impl HourRuns {
    /// The date of the hour starting at `key` (`YYYY-MM-DDTHH`, as the
    /// bounds formatted by [`hour_key`]), if it falls in a run with one.
    pub(super) fn date_of(&self, keys: &[String], key: &str) -> Option<&str> {
        let i = keys.partition_point(|k| k.as_str() <= key).checked_sub(1)?;
        self.dates.get(i)?.as_deref()
    }
}

/// A UTC hour as the hourly rollup's text key (`2026-11-23T19`).
pub(super) fn hour_key(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H").to_string()
}

/// Adds `b` to `into`, each count saturating at i64::MAX.
pub(super) fn add_bucket(into: &mut Bucket, b: &Bucket) {
    into.input_tokens = into.input_tokens.saturating_add(b.input_tokens);
    into.output_tokens = into.output_tokens.saturating_add(b.output_tokens);
    into.cache_read_tokens = into.cache_read_tokens.saturating_add(b.cache_read_tokens);
    into.cache_write_tokens = into.cache_write_tokens.saturating_add(b.cache_write_tokens);
    into.task_count = into.task_count.saturating_add(b.task_count);
}

/// Workspace usage per (date, model) over the hourly rollup, each hour
/// counted on the date of its run in `runs` (hours of runs without a date
/// are left out). Sums saturate at i64::MAX; no order.
pub fn by_hour_runs(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    runs: &HourRuns,
) -> Result<Vec<Bucket>> {
    if runs.bounds.len() < 2 || runs.dates.len() + 1 != runs.bounds.len() {
        return Ok(Vec::new());
    }
    dispatch!(conn, usage::by_hour_runs(workspace, runs))
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

/// A runtime's usage on dates `>= from` from `source`, in no order.
pub fn runtime_usage(
    conn: &Conn<'_>,
    runtime: RuntimeId,
    from: &str,
    source: UsageSource,
) -> Result<Vec<RuntimeUsage>> {
    dispatch!(conn, usage::runtime_usage(runtime, from, source))
}
