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
) -> Result<UsageChange> {
    upsert_task_usage_with_cost(conn, task, workspace, entry, None, at)
}

/// What a usage write changed of a task's (provider, model) row: its
/// counts (input, output, cache read, cache write) and reported cost
/// before (`None`: the row is new) and after, and when the row was first
/// recorded (the UTC day its usage is priced on).
#[derive(Debug, Clone, Copy)]
pub struct UsageChange {
    pub before: Option<([i64; 4], Option<i64>)>,
    pub after: ([i64; 4], Option<i64>),
    pub bucket: Timestamp,
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
) -> Result<UsageChange> {
    let counts = [
        entry.input_tokens,
        entry.output_tokens,
        entry.cache_read_tokens,
        entry.cache_write_tokens,
    ];
    // the task's row lock before the reads below: the totals this write
    // replaces and the rollups' deltas it derives from them stay exact
    // while other reports of the task wait, on any engine
    let keys: Result<Option<TaskKeys>> = dispatch!(conn, usage::lock_task(task));
    let keys = keys?.unwrap_or((None, None));
    // a task no runtime claimed keeps its quarter hours under the nil UUID
    let place = TaskPlace {
        runtime: keys.0.unwrap_or_else(|| {
            <RuntimeId as crate::domain::EntityId>::from_uuid(uuid::Uuid::nil())
        }),
        agent: keys.1,
    };
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
    let bucket = old.as_ref().map_or(at, |o| o.created_at);
    let quarter = QuarterDelta::between(before, (counts, cost_usd_ticks), new_task);
    let rolled: Result<()> = dispatch!(
        conn,
        usage::add_to_blocks(workspace, keys, bucket, entry, &quarter)
    );
    rolled?;
    let rolled: Result<()> = dispatch!(
        conn,
        usage::add_to_quarter_rollup(workspace, &place, bucket, entry, &quarter)
    );
    rolled?;
    if let Some(zone) = zone_days_of(conn, workspace)? {
        let day = day_start(zone, bucket.utc());
        let rolled: Result<()> = dispatch!(
            conn,
            usage::add_to_zone_day(workspace, day, entry, &quarter.values())
        );
        rolled?;
    }
    Ok(UsageChange {
        before,
        after: (counts, cost_usd_ticks),
        bucket,
    })
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

/// Most rows [`runtime_quarters`] returns (one more says there are more):
/// a year of a runtime with two agents running three models each at all
/// hours is about 210,000.
pub const MAX_RUNTIME_QUARTERS: i64 = 250_000;

/// A runtime's usage since `from` (a quarter-hour boundary: the start of
/// a local day in any zone), one row per quarter hour, agent, provider and
/// model, at most [`MAX_RUNTIME_QUARTERS`] + 1; no order.
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

/// A task's runtime (none until a daemon claims it) and agent (none once
/// deleted), as its row holds them.
pub(super) type TaskKeys = (Option<RuntimeId>, Option<AgentId>);

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

/// What older daemons reported for the runtime on dates `>= from`, in no
/// order.
pub fn runtime_reports(
    conn: &Conn<'_>,
    runtime: RuntimeId,
    from: &str,
) -> Result<Vec<RuntimeUsage>> {
    dispatch!(conn, usage::runtime_reports(runtime, from))
}

/// The rollups of task usage whose rows move to the newer registration
/// when an older one of a runtime is folded into it: each table, its key
/// and other text columns (`runtime_id` among them), and how many of those
/// (the first) make its primary key. Their counts are [`QUARTER_COLUMNS`].
pub(super) const RUNTIME_ROLLUPS: &[(&str, &[&str], usize)] = &[
    (
        "runtime_usage_quarter",
        &[
            "runtime_id",
            "bucket",
            "agent_id",
            "provider",
            "model",
            "workspace_id",
        ],
        5,
    ),
    (
        "usage_agent_block",
        &[
            "workspace_id",
            "span",
            "bucket",
            "runtime_id",
            "agent_id",
            "provider",
            "model",
        ],
        7,
    ),
];

/// The two block rollups of task usage (see the V17/V10 migrations). A
/// block of a span shorter than a day starts at a multiple of its span
/// after UTC midnight; a block of whole days starts on a UTC day whose
/// number since 1970-01-01 is a multiple of its length. No block crosses
/// a UTC midnight, so each is priced on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Blocks {
    /// `usage_block`: per (provider, model); the day pages read it.
    Model,
    /// `usage_agent_block`: per (runtime, agent, provider, model); the
    /// pages of whole windows read it.
    Agent,
}

/// Minutes in a day.
pub const DAY: i64 = 1440;

impl Blocks {
    /// Its spans in minutes, longest first. Each divides the next longer
    /// one, so every block of a span is cut into whole blocks of the
    /// shorter ones. Sub-day spans of the day pages double from 15
    /// minutes: a local day starting at any quarter hour is at most a
    /// dozen blocks. The whole-window pages go up to 64 days.
    pub fn spans(self) -> &'static [i64] {
        match self {
            Blocks::Model => &[DAY, 480, 240, 120, 60, 30, QUARTER],
            Blocks::Agent => &[64 * DAY, 16 * DAY, 4 * DAY, DAY, 240, QUARTER],
        }
    }

    /// The spans its table stores: quarter hours are read from
    /// `runtime_usage_quarter`, which holds them already.
    pub(super) fn stored_spans(self) -> &'static [i64] {
        let spans = self.spans();
        &spans[..spans.len() - 1]
    }
}

/// The shortest span: a quarter hour, in minutes.
pub const QUARTER: i64 = 15;

/// The start of the block of `span` minutes that `t` falls in.
pub fn block_start(t: chrono::DateTime<chrono::Utc>, span: i64) -> chrono::DateTime<chrono::Utc> {
    let secs = t.timestamp();
    let (day, second) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let start = if span < DAY {
        day * 86_400 + second / (span * 60) * (span * 60)
    } else {
        let days = span / DAY;
        (day - day.rem_euclid(days)) * 86_400
    };
    chrono::DateTime::from_timestamp(start, 0).unwrap_or(t)
}

/// Consecutive blocks of one span, `from..to`, all counted under `label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRun {
    pub span: i64,
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
    pub label: usize,
}

/// Covers `start..end` (both on quarter hours) with blocks of `which`'s
/// spans, none crossing a cut: the time between two cuts is one label
/// (0 from `start` to the first cut, and so on). `cuts` are ascending,
/// distinct and strictly between `start` and `end`. Each stretch takes the
/// longest block that starts where it is and ends before the next cut,
/// but a stretch whose label `zone_days` marks is one local day of the
/// workspace's day zone, read whole ([`ZONE_DAY`]).
pub fn cover(
    which: Blocks,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
    cuts: &[chrono::DateTime<chrono::Utc>],
    zone_days: &[bool],
) -> Vec<BlockRun> {
    let quarter = |t: chrono::DateTime<chrono::Utc>| block_start(t, 15);
    let mut bounds = vec![quarter(start)];
    bounds.extend(cuts.iter().map(|c| quarter(*c)));
    bounds.push(end);
    let mut runs: Vec<BlockRun> = Vec::new();
    for (label, pair) in bounds.windows(2).enumerate() {
        let (mut at, stop) = (pair[0], pair[1]);
        if zone_days.get(label).copied().unwrap_or(false) {
            push_run(&mut runs, ZONE_DAY, at, stop, label);
            continue;
        }
        while at < stop {
            let Some(span) = which.spans().iter().copied().find(|span| {
                block_start(at, *span) == at && at + chrono::Duration::minutes(*span) <= stop
            }) else {
                // a stop inside a quarter hour: its whole quarter
                let next = at + chrono::Duration::minutes(15);
                push_run(&mut runs, 15, at, next, label);
                at = next;
                continue;
            };
            let next = at + chrono::Duration::minutes(span);
            push_run(&mut runs, span, at, next, label);
            at = next;
        }
    }
    runs
}

fn push_run(
    runs: &mut Vec<BlockRun>,
    span: i64,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    label: usize,
) {
    match runs.last_mut() {
        Some(last) if last.span == span && last.label == label && last.to == from => last.to = to,
        _ => runs.push(BlockRun {
            span,
            from,
            to,
            label,
        }),
    }
}

/// The sums of one label and (runtime, agent, provider, model) over
/// block runs, counts in [`QUARTER_COLUMNS`] order. runtime and agent are
/// `None` when the rollup has no such key (`Blocks::Model`) or the task
/// had none.
#[derive(Debug, Clone)]
pub struct BlockSum {
    pub label: usize,
    pub runtime: Option<RuntimeId>,
    pub agent: Option<AgentId>,
    pub provider: String,
    pub model: String,
    pub counts: [i64; 10],
}

/// Adds block rows up per label and key as an engine reads them (sums
/// saturate at i64::MAX), in a hash of the key's bytes. On SQLite, GROUP
/// BY sorted every row, at three times the cost of reading them; on
/// PostgreSQL, it costs more than sending the rows where a sum has one or
/// two of them (the day pages).
#[derive(Default)]
pub(super) struct SumsByKey {
    index: std::collections::HashMap<Vec<u8>, usize>,
    sums: Vec<BlockSum>,
    key: Vec<u8>,
}

impl SumsByKey {
    /// Adds `counts` to the sum of (`label`, `keys`); `first` makes that
    /// sum from the row when it is the key's first.
    pub(super) fn add<E>(
        &mut self,
        label: usize,
        keys: &[&[u8]],
        counts: [i64; 10],
        first: impl FnOnce() -> std::result::Result<BlockSum, E>,
    ) -> std::result::Result<(), E> {
        self.key.clear();
        self.key.extend_from_slice(&label.to_le_bytes());
        for k in keys {
            // lengths first: no two keys' texts run together alike
            self.key.extend_from_slice(&k.len().to_le_bytes());
            self.key.extend_from_slice(k);
        }
        match self.index.get(self.key.as_slice()) {
            Some(&at) => {
                for (a, b) in self.sums[at].counts.iter_mut().zip(counts) {
                    *a = a.saturating_add(b);
                }
            }
            None => {
                self.index.insert(self.key.clone(), self.sums.len());
                self.sums.push(first()?);
            }
        }
        Ok(())
    }

    pub(super) fn into_sums(self) -> Vec<BlockSum> {
        self.sums
    }
}

/// Adds up `which`'s blocks of the workspace in `runs` per label and key
/// (sums saturate at i64::MAX); no order.
pub fn block_sums(
    conn: &Conn<'_>,
    which: Blocks,
    workspace: WorkspaceId,
    runs: &[BlockRun],
) -> Result<Vec<BlockSum>> {
    // quarter hours come from the runtime rollup, local days of the day
    // zone from theirs, the rest from `which`'s own table: one read of each
    let mut out = Vec::new();
    for source in [Source::Blocks, Source::Quarters, Source::ZoneDays] {
        let runs: Vec<BlockRun> = runs
            .iter()
            .filter(|r| Source::of(r.span) == source)
            .cloned()
            .collect();
        if runs.is_empty() {
            continue;
        }
        if source == Source::ZoneDays && which != Blocks::Model {
            return Err(super::Error::internal(
                "whole local days are kept per provider and model only",
            ));
        }
        let sums: Result<Vec<BlockSum>> =
            dispatch!(conn, usage::block_sums(which, workspace, &runs, source));
        out.extend(sums?);
    }
    Ok(out)
}

/// A run's span for one whole local day of the workspace's day zone
/// (`workspace.day_zone`), read from `usage_zone_day`: a row per day and
/// (provider, model), kept by every usage write beside the blocks. A
/// local day whose midnight is not UTC's is five to seven blocks of
/// `usage_block`; in the zone the workspace is set to, it is one row.
pub const ZONE_DAY: i64 = 0;

/// Which table an engine reads a group of runs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The block rollup of the [`Blocks`] read.
    Blocks,
    /// `runtime_usage_quarter`.
    Quarters,
    /// `usage_zone_day`.
    ZoneDays,
}

impl Source {
    fn of(span: i64) -> Source {
        match span {
            QUARTER => Source::Quarters,
            ZONE_DAY => Source::ZoneDays,
            _ => Source::Blocks,
        }
    }
}

/// The UTC instant the local date of `tz` starts at; a midnight a DST
/// jump skips starts its day at the jump.
pub fn local_midnight(tz: chrono_tz::Tz, date: chrono::NaiveDate) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    let naive = date.and_time(chrono::NaiveTime::MIN);
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.with_timezone(&chrono::Utc)
        }
        chrono::LocalResult::None => (1..=3)
            .find_map(|h| {
                tz.from_local_datetime(&(naive + chrono::Duration::hours(h)))
                    .earliest()
            })
            .map_or_else(
                || chrono::Utc.from_utc_datetime(&naive),
                |t| t.with_timezone(&chrono::Utc),
            ),
    }
}

/// When the local day of `tz` that `t` falls in starts.
pub fn day_start(
    tz: chrono_tz::Tz,
    t: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    local_midnight(tz, t.with_timezone(&tz).date_naive())
}

/// The zone whose local days the workspace's `usage_zone_day` rows are
/// (`None`: no such workspace, or a name this build does not know, whose
/// rows are then neither read nor written).
pub fn zone_days_of(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<Option<chrono_tz::Tz>> {
    let name: Result<Option<String>> = dispatch!(conn, usage::day_zone(workspace));
    Ok(name?.and_then(|n| n.parse().ok()))
}

/// One local day's usage of a (provider, model), counts in
/// [`QUARTER_COLUMNS`] order: a row of `usage_zone_day` a rebuild writes.
pub(super) struct ZoneDay {
    pub start: chrono::DateTime<chrono::Utc>,
    pub provider: String,
    pub model: String,
    pub counts: [i64; 10],
}

/// Local days a rebuild of the zone days reads at once.
const REBUILD_DAYS: u64 = 64;

/// Makes `usage_zone_day` the local days of `zone` for the workspace: its
/// rows are dropped and the workspace's stored usage is added up again
/// per local day from the blocks (64 days a statement), and `day_zone`
/// records the zone. Usage writes of the workspace wait meanwhile (the
/// exclusive side of the budgets' hold, on engines with locks), so none
/// is counted in the old zone's days after this read them, or missed.
pub fn set_day_zone(conn: &Conn<'_>, workspace: WorkspaceId, zone: chrono_tz::Tz) -> Result<()> {
    let held: Result<()> = dispatch!(conn, budgets::hold(workspace, true));
    held?;
    let cleared: Result<()> = dispatch!(conn, usage::clear_zone_days(workspace, zone.name()));
    cleared?;
    let range: Result<Option<(chrono::NaiveDate, chrono::NaiveDate)>> =
        dispatch!(conn, usage::usage_days(workspace));
    let Some((first, last)) = range? else {
        return Ok(());
    };
    let local = |d: chrono::NaiveDate| {
        d.and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .with_timezone(&zone)
            .date_naive()
    };
    // the local days holding the first UTC day's start and the last's end
    let (mut day, last) = (local(first), local(last + chrono::Days::new(1)));
    while day <= last {
        let until = std::cmp::min(day + chrono::Days::new(REBUILD_DAYS - 1), last);
        let midnights: Vec<chrono::DateTime<chrono::Utc>> = day
            .iter_days()
            .take_while(|d| *d <= until + chrono::Days::new(1))
            .map(|d| local_midnight(zone, d))
            .collect();
        let (start, end) = (midnights[0], midnights[midnights.len() - 1]);
        let cuts = &midnights[1..midnights.len() - 1];
        let runs = cover(Blocks::Model, start, end, cuts, &[]);
        let mut days: std::collections::HashMap<(usize, String, String), [i64; 10]> =
            std::collections::HashMap::new();
        for sum in block_sums(conn, Blocks::Model, workspace, &runs)? {
            let counts = days
                .entry((sum.label, sum.provider, sum.model))
                .or_default();
            for (a, b) in counts.iter_mut().zip(sum.counts) {
                *a = a.saturating_add(b);
            }
        }
        let rows: Vec<ZoneDay> = days
            .into_iter()
            .filter_map(|((label, provider, model), counts)| {
                Some(ZoneDay {
                    start: *midnights.get(label)?,
                    provider,
                    model,
                    counts,
                })
            })
            .collect();
        let added: Result<()> = dispatch!(conn, usage::insert_zone_days(workspace, &rows));
        added?;
        day = until + chrono::Days::new(1);
    }
    Ok(())
}

/// The workspaces whose zone days are not days of their time zone, with
/// that zone.
pub fn zones_apart(conn: &Conn<'_>) -> Result<Vec<(WorkspaceId, String)>> {
    dispatch!(conn, usage::zones_apart())
}

/// Rebuilds the zone days of every workspace whose rows are not days of
/// its time zone (after the migration that added them, every workspace
/// set to another zone before): run when the store opens. Returns how
/// many were rebuilt.
pub fn align_zone_days(conn: &Conn<'_>) -> Result<usize> {
    let mut rebuilt = 0;
    for (workspace, name) in zones_apart(conn)? {
        let zone = name.parse().unwrap_or(chrono_tz::UTC);
        set_day_zone(conn, workspace, zone)?;
        rebuilt += 1;
    }
    Ok(rebuilt)
}

/// How the tasks of one label (and agent) ended: one (status, reason).
#[derive(Debug, Clone)]
pub struct OutcomeSum {
    pub label: usize,
    /// `None` from the workspace rollup (`Blocks::Model`), or for tasks
    /// without an agent.
    pub agent: Option<AgentId>,
    /// completed, failed or cancelled.
    pub status: String,
    /// '' but for failed tasks ('unclassified' when they carried none).
    pub failure_reason: String,
    pub task_count: i64,
    /// Of those, the tasks that had started, and their run time.
    pub run_count: i64,
    pub run_seconds: i64,
}

/// Adds up the task outcome blocks of the workspace in `runs`
/// (`Blocks::Model`: `task_outcome_block`; `Blocks::Agent`: per agent,
/// `task_outcome_agent_block`) per label, agent, status and reason; no
/// order.
pub fn outcome_sums(
    conn: &Conn<'_>,
    which: Blocks,
    workspace: WorkspaceId,
    runs: &[BlockRun],
) -> Result<Vec<OutcomeSum>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    dispatch!(conn, usage::outcome_sums(which, workspace, runs))
}

/// The nil UUID the block rollups keep for "no runtime", as `None`.
pub(super) fn runtime_of(id: uuid::Uuid) -> Option<RuntimeId> {
    (!id.is_nil()).then(|| <RuntimeId as crate::domain::EntityId>::from_uuid(id))
}

/// The starts of the blocks a usage write recorded at `t` moves, in the
/// order of `which`'s stored spans.
pub(super) fn block_starts(which: Blocks, t: Timestamp) -> Vec<chrono::DateTime<chrono::Utc>> {
    which
        .stored_spans()
        .iter()
        .map(|span| block_start(t.utc(), *span))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("a time")
            .with_timezone(&chrono::Utc)
    }

    fn spans(runs: &[BlockRun]) -> Vec<(i64, String, String, usize)> {
        runs.iter()
            .map(|r| {
                (
                    r.span,
                    r.from.format("%dT%H:%M").to_string(),
                    r.to.format("%dT%H:%M").to_string(),
                    r.label,
                )
            })
            .collect()
    }

    #[test]
    fn a_half_hour_day_is_seven_blocks() {
        // a day in Asia/Kolkata: 18:30 UTC to 18:30 UTC
        let runs = cover(
            Blocks::Model,
            at("2026-06-01T18:30:00Z"),
            at("2026-06-02T18:30:00Z"),
            &[],
            &[],
        );
        assert_eq!(
            spans(&runs),
            [
                (30, "01T18:30".into(), "01T19:00".into(), 0),
                (60, "01T19:00".into(), "01T20:00".into(), 0),
                (240, "01T20:00".into(), "02T00:00".into(), 0),
                (480, "02T00:00".into(), "02T16:00".into(), 0),
                (120, "02T16:00".into(), "02T18:00".into(), 0),
                (30, "02T18:00".into(), "02T18:30".into(), 0),
            ]
        );
    }

    #[test]
    fn a_cut_splits_labels_and_long_blocks_align_to_1970() {
        // 2026-06-01 is day 20605 since 1970-01-01; 20608 is a multiple of 4
        let runs = cover(
            Blocks::Agent,
            at("2026-06-01T23:45:00Z"),
            at("2026-06-10T00:00:00Z"),
            &[at("2026-06-09T00:00:00Z")],
            &[],
        );
        assert_eq!(
            spans(&runs),
            [
                (15, "01T23:45".into(), "02T00:00".into(), 0),
                (1440, "02T00:00".into(), "04T00:00".into(), 0),
                (5760, "04T00:00".into(), "08T00:00".into(), 0),
                (1440, "08T00:00".into(), "09T00:00".into(), 0),
                (1440, "09T00:00".into(), "10T00:00".into(), 1),
            ]
        );
    }

    #[test]
    fn block_starts_are_aligned() {
        let t = at("2026-06-01T13:47:12Z");
        assert_eq!(block_start(t, 15), at("2026-06-01T13:45:00Z"));
        assert_eq!(block_start(t, 480), at("2026-06-01T08:00:00Z"));
        assert_eq!(block_start(t, DAY), at("2026-06-01T00:00:00Z"));
        assert_eq!(block_start(t, 4 * DAY), at("2026-05-31T00:00:00Z"));
    }
}
