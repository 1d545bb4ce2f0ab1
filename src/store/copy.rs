//! `agenthub copy-data`: a whole install copied from one database into an
//! empty one, across engines (a SQLite file into PostgreSQL and back).
//!
//! The source is read as one snapshot (one read transaction on either
//! engine, so a server may keep writing to it meanwhile); the destination
//! is migrated, must hold no rows, and is written in one transaction that
//! commits only after its row counts and every workspace's usage totals
//! were checked against the source's snapshot: a copy that fails leaves it
//! empty.
//!
//! Tables are copied in foreign-key order, every column, rows streamed in
//! batches. Each engine reads its own representation into a [`Cell`]
//! (`sqlite::copy`, `postgres::copy`) and writes a cell in its own:
//! hyphenated UUID text / `uuid`, fixed-width millisecond UTC text /
//! `timestamptz`, JSON text / `jsonb`, `YYYY-MM-DD` / `date`, and the
//! usage hour `YYYY-MM-DDTHH` / the `timestamptz` that hour starts at.
//! PostgreSQL's `seq` identities stand in for SQLite's rowids: rows are
//! read in that order and written without one, so the destination numbers
//! them in the same order (and its identity stays past them).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::config::DatabaseConfig;

/// How a column is represented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Id,
    Text,
    Int,
    Time,
    Json,
    Date,
    /// The start of a usage block, a quarter hour
    /// (`runtime_usage_quarter.bucket`, `usage_block.bucket`).
    Quarter,
}

/// One value on its way between the engines.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Cell {
    Null,
    Id(Uuid),
    Text(String),
    Int(i64),
    /// To the millisecond.
    Time(DateTime<Utc>),
    /// A JSON text.
    Json(String),
    Date(NaiveDate),
    /// The start of a UTC quarter hour.
    Quarter(DateTime<Utc>),
}

/// A table of agenthub's data model.
pub(super) struct Table {
    pub(super) name: &'static str,
    pub(super) columns: &'static [(&'static str, Kind)],
    /// Whether PostgreSQL numbers its rows with a `seq` identity (SQLite:
    /// its rowid), the order lists break ties by.
    pub(super) seq: bool,
}

impl Table {
    /// The table's name, quoted for SQL.
    pub(super) fn quoted(&self) -> String {
        format!("\"{}\"", self.name)
    }

    /// The quoted column names, comma-separated.
    pub(super) fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|(name, _)| format!("\"{name}\""))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

use Kind::{Date, Id, Int, Json, Quarter, Text, Time};

const USAGE: [(&str, Kind); 4] = [
    ("input_tokens", Int),
    ("output_tokens", Int),
    ("cache_read_tokens", Int),
    ("cache_write_tokens", Int),
];

/// Every table, parents before children; the migration history is not
/// data and is not copied.
pub(super) const TABLES: &[Table] = &[
    Table {
        name: "user",
        columns: &[
            ("id", Id),
            ("email", Text),
            ("name", Text),
            ("created_at", Time),
            ("updated_at", Time),
        ],
        seq: false,
    },
    Table {
        name: "workspace",
        columns: &[
            ("id", Id),
            ("name", Text),
            ("slug", Text),
            ("description", Text),
            ("created_at", Time),
            ("updated_at", Time),
            ("runtime_count", Int),
            ("timezone", Text),
            ("day_zone", Text),
            ("max_concurrent_tasks", Int),
        ],
        seq: true,
    },
    Table {
        name: "member",
        columns: &[
            ("id", Id),
            ("workspace_id", Id),
            ("user_id", Id),
            ("role", Text),
            ("created_at", Time),
        ],
        seq: true,
    },
    Table {
        name: "personal_access_token",
        columns: &[
            ("id", Id),
            ("user_id", Id),
            ("name", Text),
            ("token_hash", Text),
            ("token_prefix", Text),
            ("expires_at", Time),
            ("last_used_at", Time),
            ("revoked_at", Time),
            ("created_at", Time),
            ("renewed_at", Time),
        ],
        seq: true,
    },
    Table {
        name: "daemon_token",
        columns: &[
            ("id", Id),
            ("token_hash", Text),
            ("workspace_id", Id),
            ("daemon_id", Text),
            ("created_by", Id),
            ("expires_at", Time),
            ("revoked_at", Time),
            ("created_at", Time),
            ("renewed_at", Time),
        ],
        seq: false,
    },
    Table {
        name: "agent_runtime",
        columns: &[
            ("id", Id),
            ("workspace_id", Id),
            ("daemon_id", Text),
            ("name", Text),
            ("runtime_mode", Text),
            ("provider", Text),
            ("status", Text),
            ("device_info", Text),
            ("metadata", Json),
            ("owner_id", Id),
            ("last_seen_at", Time),
            ("created_at", Time),
            ("updated_at", Time),
            ("offline_reason", Json),
            ("visibility", Text),
            ("custom_name", Text),
            ("offline_since", Time),
            ("max_concurrent_tasks", Int),
        ],
        seq: false,
    },
    Table {
        name: "machine_limit",
        columns: &[
            ("owner_id", Id),
            ("daemon_id", Text),
            ("max_concurrent_tasks", Int),
            ("updated_at", Time),
        ],
        seq: false,
    },
    Table {
        name: "agent",
        columns: &[
            ("id", Id),
            ("workspace_id", Id),
            ("runtime_id", Id),
            ("name", Text),
            ("description", Text),
            ("instructions", Text),
            ("avatar_url", Text),
            ("runtime_mode", Text),
            ("runtime_config", Json),
            ("visibility", Text),
            ("status", Text),
            ("max_concurrent_tasks", Int),
            ("owner_id", Id),
            ("archived_at", Time),
            ("archived_by", Id),
            ("max_attempts", Int),
            ("created_at", Time),
            ("updated_at", Time),
            ("fallback_after_secs", Int),
            ("quota_failed_at", Time),
        ],
        seq: false,
    },
    Table {
        name: "webhook",
        columns: &[
            ("id", Id),
            ("workspace_id", Id),
            ("url", Text),
            ("events", Json),
            ("secret", Text),
            ("created_by", Id),
            ("created_at", Time),
        ],
        seq: false,
    },
    Table {
        name: "agent_fallback",
        columns: &[("agent_id", Id), ("runtime_id", Id), ("position", Int)],
        seq: false,
    },
    Table {
        name: "agent_task_queue",
        columns: &[
            ("id", Id),
            ("workspace_id", Id),
            ("agent_id", Id),
            ("runtime_id", Id),
            ("status", Text),
            ("priority", Int),
            ("prompt", Text),
            ("issue_id", Text),
            ("dispatched_at", Time),
            ("started_at", Time),
            ("completed_at", Time),
            ("result", Json),
            ("error", Text),
            ("created_at", Time),
            ("created_by", Id),
            ("session_id", Text),
            ("work_dir", Text),
            ("prepare_lease_expires_at", Time),
            ("branch_name", Text),
            ("durable_work_dir", Text),
            ("failure_reason", Text),
            ("cancel_acked_at", Time),
            ("transcript_bytes", Int),
            ("attempt", Int),
            ("parent_task_id", Id),
        ],
        seq: true,
    },
    Table {
        name: "task_usage",
        columns: &[
            ("id", Id),
            ("task_id", Id),
            ("provider", Text),
            ("model", Text),
            USAGE[0],
            USAGE[1],
            USAGE[2],
            USAGE[3],
            ("created_at", Time),
            ("updated_at", Time),
            ("cost_usd_ticks", Int),
        ],
        seq: false,
    },
    Table {
        name: "runtime_usage",
        columns: &[
            ("id", Id),
            ("runtime_id", Id),
            ("date", Date),
            ("provider", Text),
            ("model", Text),
            USAGE[0],
            USAGE[1],
            USAGE[2],
            USAGE[3],
            ("created_at", Time),
            ("updated_at", Time),
        ],
        seq: false,
    },
    Table {
        name: "usage_block",
        columns: &[
            ("workspace_id", Id),
            ("span", Int),
            ("bucket", Quarter),
            ("provider", Text),
            ("model", Text),
            USAGE[0],
            USAGE[1],
            USAGE[2],
            USAGE[3],
            ("cost_usd_ticks", Int),
            ("uncosted_input_tokens", Int),
            ("uncosted_output_tokens", Int),
            ("uncosted_cache_read_tokens", Int),
            ("uncosted_cache_write_tokens", Int),
            ("task_count", Int),
        ],
        seq: false,
    },
    Table {
        name: "usage_zone_day",
        columns: &[
            ("workspace_id", Id),
            ("bucket", Quarter),
            ("provider", Text),
            ("model", Text),
            USAGE[0],
            USAGE[1],
            USAGE[2],
            USAGE[3],
            ("cost_usd_ticks", Int),
            ("uncosted_input_tokens", Int),
            ("uncosted_output_tokens", Int),
            ("uncosted_cache_read_tokens", Int),
            ("uncosted_cache_write_tokens", Int),
            ("task_count", Int),
        ],
        seq: false,
    },
    Table {
        name: "usage_agent_block",
        columns: &[
            ("workspace_id", Id),
            ("span", Int),
            ("bucket", Quarter),
            ("runtime_id", Id),
            ("agent_id", Id),
            ("provider", Text),
            ("model", Text),
            USAGE[0],
            USAGE[1],
            USAGE[2],
            USAGE[3],
            ("cost_usd_ticks", Int),
            ("uncosted_input_tokens", Int),
            ("uncosted_output_tokens", Int),
            ("uncosted_cache_read_tokens", Int),
            ("uncosted_cache_write_tokens", Int),
            ("task_count", Int),
        ],
        seq: false,
    },
    Table {
        name: "invitation",
        columns: &[
            ("id", Id),
            ("workspace_id", Id),
            ("email", Text),
            ("role", Text),
            ("status", Text),
            ("invited_by", Id),
            ("created_at", Time),
            ("expires_at", Time),
            ("answered_at", Time),
        ],
        seq: true,
    },
    Table {
        name: "task_token",
        columns: &[
            ("id", Id),
            ("token_hash", Text),
            ("task_id", Id),
            ("workspace_id", Id),
            ("expires_at", Time),
            ("created_at", Time),
        ],
        seq: false,
    },
    Table {
        name: "task_message",
        columns: &[
            ("task_id", Id),
            ("seq", Int),
            ("type", Text),
            ("tool", Text),
            ("content", Text),
            ("input", Json),
            ("output", Text),
            ("created_at", Time),
        ],
        seq: false,
    },
    Table {
        name: "runtime_usage_quarter",
        columns: &[
            ("runtime_id", Id),
            ("bucket", Quarter),
            ("agent_id", Id),
            ("provider", Text),
            ("model", Text),
            ("workspace_id", Id),
            USAGE[0],
            USAGE[1],
            USAGE[2],
            USAGE[3],
            ("cost_usd_ticks", Int),
            ("uncosted_input_tokens", Int),
            ("uncosted_output_tokens", Int),
            ("uncosted_cache_read_tokens", Int),
            ("uncosted_cache_write_tokens", Int),
            ("task_count", Int),
        ],
        seq: false,
    },
    Table {
        name: "pricing_override",
        columns: &[
            ("workspace_id", Id),
            ("provider", Text),
            ("model", Text),
            ("effective_from", Date),
            ("input_micro_usd", Int),
            ("output_micro_usd", Int),
            ("cache_read_micro_usd", Int),
            ("cache_write_micro_usd", Int),
            ("created_by", Id),
            ("updated_at", Time),
        ],
        seq: false,
    },
    Table {
        name: "budget",
        columns: &[
            ("id", Id),
            ("workspace_id", Id),
            ("scope", Text),
            ("scope_id", Id),
            ("period", Text),
            ("limit_ticks", Int),
            ("warn_percent", Int),
            ("period_start", Time),
            ("spent_ticks", Int),
            ("warned_for", Time),
            ("exceeded_for", Time),
            ("blocked_until", Time),
            ("created_by", Id),
            ("created_at", Time),
            ("updated_at", Time),
        ],
        seq: false,
    },
    Table {
        name: "runtime_probe",
        columns: &[
            ("id", Id),
            ("runtime_id", Id),
            ("kind", Text),
            ("status", Text),
            ("target_version", Text),
            ("output", Text),
            ("error", Text),
            ("duration_ms", Int),
            ("created_at", Time),
            ("updated_at", Time),
        ],
        seq: true,
    },
];

/// The usage sums of each workspace: input, output, cache read and cache
/// write tokens of its `usage_block` days, then of its tasks' `task_usage`.
pub(super) type Totals = BTreeMap<Uuid, [i128; 8]>;

/// Adds per-workspace sums read from one of the two sources of totals
/// (`offset` 0: usage_block, 4: task_usage).
pub(super) fn add_totals(totals: &mut Totals, offset: usize, workspace: Uuid, sums: [i128; 4]) {
    let entry = totals.entry(workspace).or_insert([0; 8]);
    for (i, sum) in sums.into_iter().enumerate() {
        entry[offset + i] += sum;
    }
}

/// The SELECTs of the usage totals, portable between the engines: rows of
/// (workspace id, four sums).
const DAILY_TOTALS: &str = "SELECT workspace_id, sum(input_tokens) AS i, \
     sum(output_tokens) AS o, sum(cache_read_tokens) AS r, sum(cache_write_tokens) AS w \
     FROM usage_block WHERE span = 1440 GROUP BY workspace_id";
const TASK_TOTALS: &str = "SELECT t.workspace_id, sum(u.input_tokens) AS i, \
     sum(u.output_tokens) AS o, sum(u.cache_read_tokens) AS r, sum(u.cache_write_tokens) AS w \
     FROM task_usage u JOIN agent_task_queue t ON t.id = u.task_id GROUP BY t.workspace_id";

/// What a copy did: the rows of each table, and for how many workspaces
/// the usage totals were compared.
#[derive(Debug, Clone)]
pub struct CopyReport {
    pub tables: Vec<(&'static str, u64)>,
    pub workspaces: usize,
}

/// Why a copy did not happen; the destination holds no rows.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("cannot copy from {db}: {detail}")]
    Source { db: String, detail: String },
    #[error("cannot copy into {db}: {detail}")]
    Destination { db: String, detail: String },
    #[error("the copy in {db} does not match its source ({detail}); it was rolled back")]
    Mismatch { db: String, detail: String },
}

/// A reason with the side it happened on, before the database is named.
pub(super) enum Failed {
    Source(String),
    Destination(String),
}

pub(super) type Step<T> = Result<T, Failed>;

/// What both sides answer about themselves.
pub(super) trait Database {
    /// The agenthub tables it holds (not the migration history).
    fn tables(&mut self) -> Step<BTreeSet<String>>;
    /// The columns of `table` (on PostgreSQL without the `seq` that
    /// numbers its rows, where it has one: see [`Table::seq`]).
    fn columns(&mut self, table: &Table) -> Step<BTreeSet<String>>;
    fn count(&mut self, table: &Table) -> Step<u64>;
    /// Adds the per-workspace sums a totals SELECT (`sql`) answers into
    /// `totals` at `offset`.
    fn add_totals(&mut self, totals: &mut Totals, offset: usize, sql: &str) -> Step<()>;

    /// The usage totals of every workspace: its rollups, then its tasks'.
    fn totals(&mut self) -> Step<Totals> {
        let mut totals = Totals::new();
        self.add_totals(&mut totals, 0, DAILY_TOTALS)?;
        self.add_totals(&mut totals, 4, TASK_TOTALS)?;
        Ok(totals)
    }
}

/// The source, inside its snapshot.
pub(super) trait Source: Database {
    /// Calls `each` with every row of `table`, in `seq` / rowid order where
    /// the table has one; returns how many rows it read.
    fn read(&mut self, table: &Table, each: &mut dyn FnMut(Vec<Cell>) -> Step<()>) -> Step<u64>;
}

/// The destination, inside its one transaction.
pub(super) trait Destination: Database {
    /// Whether `table` holds no rows.
    fn is_empty(&mut self, table: &Table) -> Step<bool>;
    /// A writer of rows into `table`.
    fn writer(&mut self, table: &'static Table) -> Step<Box<dyn TableWriter + '_>>;
    /// Sets `workspace.runtime_count` (the triggers counted the runtimes
    /// as they arrived; the source's own count is copied as it is).
    fn set_runtime_counts(&mut self, counts: &[(Uuid, i64)]) -> Step<()>;
    fn commit(&mut self) -> Step<()>;
}

/// Rows going into one table, in batches.
pub(super) trait TableWriter {
    fn push(&mut self, row: Vec<Cell>) -> Step<()>;
    fn finish(self: Box<Self>) -> Step<()>;
}

/// Copies the whole install `from` names into the empty database `to`
/// names: a SQLite file (which must not exist yet) or a PostgreSQL URL
/// (migrated first, then it must hold no rows). Blocks; runs off the async
/// executor when called on one.
pub fn copy_data(from: &DatabaseConfig, to: &DatabaseConfig) -> Result<CopyReport, CopyError> {
    super::postgres::copy::blocking(|| copy_blocking(from, to))
}

fn copy_blocking(from: &DatabaseConfig, to: &DatabaseConfig) -> Result<CopyReport, CopyError> {
    let source_name = from.describe();
    let dest_name = to.describe();
    let source_err = |detail: String| CopyError::Source {
        db: source_name.clone(),
        detail,
    };
    let dest_err = |detail: String| CopyError::Destination {
        db: dest_name.clone(),
        detail,
    };
    if from.url == to.url && (from.url.is_some() || from.path == to.path) {
        return Err(dest_err("it is the source itself".into()));
    }
    if to.url.is_none() && (to.path.exists() || to.path.is_symlink()) {
        return Err(dest_err(
            "the file already exists (copy-data writes a new SQLite file)".into(),
        ));
    }
    let mut source: Box<dyn Source> = match &from.url {
        Some(url) => super::postgres::copy::source(from, url),
        None => super::sqlite::copy::source(from),
    }
    .map_err(source_err)?;
    check_schema(source.as_mut(), Failed::Source).map_err(|f| name(f, &source_name, &dest_name))?;

    // from here on a new SQLite destination is ours to remove on failure
    let outcome = (|| {
        super::migrate(to).map_err(|e| dest_err(format!("cannot migrate it: {e}")))?;
        let mut dest: Box<dyn Destination> = match &to.url {
            Some(url) => super::postgres::copy::destination(to, url),
            None => super::sqlite::copy::destination(to),
        }
        .map_err(dest_err)?;
        copy_into(source.as_mut(), dest.as_mut()).map_err(|f| match f {
            Copied::Failed(f) => name(f, &source_name, &dest_name),
            Copied::Mismatch(detail) => CopyError::Mismatch {
                db: dest_name.clone(),
                detail,
            },
        })
    })();
    drop(source);
    if outcome.is_err() && to.url.is_none() {
        super::sqlite::copy::remove(&to.path);
    }
    outcome
}

fn name(failed: Failed, source: &str, dest: &str) -> CopyError {
    match failed {
        Failed::Source(detail) => CopyError::Source {
            db: source.to_string(),
            detail,
        },
        Failed::Destination(detail) => CopyError::Destination {
            db: dest.to_string(),
            detail,
        },
    }
}

enum Copied {
    Failed(Failed),
    Mismatch(String),
}

impl From<Failed> for Copied {
    fn from(f: Failed) -> Copied {
        Copied::Failed(f)
    }
}

/// The tables of agenthub in `db` have exactly the columns this copy
/// knows (other tables, of other programs sharing a PostgreSQL schema,
/// are left alone; a newer agenthub's are refused by the migration
/// version each engine checks first).
fn check_schema(db: &mut dyn Database, side: fn(String) -> Failed) -> Step<()> {
    let tables = db.tables()?;
    for table in TABLES {
        if !tables.contains(table.name) {
            return Err(side(format!(
                "table {} is missing (is it an agenthub database?)",
                table.name
            )));
        }
        let columns = db.columns(table)?;
        let expected: BTreeSet<String> = table.columns.iter().map(|c| c.0.to_string()).collect();
        if columns != expected {
            let odd: Vec<_> = columns.symmetric_difference(&expected).cloned().collect();
            return Err(side(format!(
                "table {} does not have the columns this agenthub copies (differing: {})",
                table.name,
                odd.join(", ")
            )));
        }
    }
    Ok(())
}

fn copy_into(source: &mut dyn Source, dest: &mut dyn Destination) -> Result<CopyReport, Copied> {
    check_schema(dest, Failed::Destination)?;
    for table in TABLES {
        if !dest.is_empty(table)? {
            return Err(Failed::Destination(format!("table {} is not empty", table.name)).into());
        }
    }
    let mut runtime_counts = Vec::new();
    let mut read = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let mut writer = dest.writer(table)?;
        let counted = table
            .columns
            .iter()
            .position(|(name, _)| *name == "runtime_count")
            .filter(|_| table.name == "workspace");
        let rows = source.read(table, &mut |mut row| {
            if let Some(at) = counted {
                // the runtimes' triggers count from zero; the source's
                // count is set once they are in
                if let (Some(Cell::Id(id)), Some(Cell::Int(count))) = (row.first(), row.get(at)) {
                    runtime_counts.push((*id, *count));
                }
                if let Some(count) = row.get_mut(at) {
                    *count = Cell::Int(0);
                }
            }
            writer.push(row)
        })?;
        writer.finish()?;
        read.push((table.name, rows));
    }
    dest.set_runtime_counts(&runtime_counts)?;

    let mut report = Vec::with_capacity(TABLES.len());
    for (table, (name, rows)) in TABLES.iter().zip(read) {
        let in_source = source.count(table)?;
        let in_copy = dest.count(table)?;
        if in_source != rows || in_copy != rows {
            return Err(Copied::Mismatch(format!(
                "table {name}: {in_source} rows in the source, {rows} read, {in_copy} in the copy"
            )));
        }
        report.push((name, rows));
    }
    let (theirs, ours) = (source.totals()?, dest.totals()?);
    if theirs != ours {
        let workspace = theirs
            .keys()
            .chain(ours.keys())
            .find(|w| theirs.get(w) != ours.get(w))
            .map_or_else(String::new, |w| format!(" of workspace {w}"));
        return Err(Copied::Mismatch(format!(
            "the usage totals{workspace} differ"
        )));
    }
    let workspaces = report
        .iter()
        .find(|(name, _)| *name == "workspace")
        .map_or(0, |(_, rows)| *rows as usize);
    dest.commit()?;
    Ok(CopyReport {
        tables: report,
        workspaces,
    })
}

/// Names a value that cannot be read: `table.column: what`.
pub(super) fn bad_value(table: &Table, column: &str, what: impl std::fmt::Display) -> String {
    format!("{}.{column}: {what}", table.name)
}

/// The fixed-width millisecond UTC text SQLite stores times as.
pub(super) const TIME_TEXT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";
/// A usage quarter hour as SQLite stores it.
pub(super) const QUARTER_TEXT: &str = "%Y-%m-%dT%H:%M";
/// A usage day as SQLite stores it.
pub(super) const DATE_TEXT: &str = "%Y-%m-%d";
