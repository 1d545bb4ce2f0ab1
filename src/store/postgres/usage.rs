//! Token usage: per-task usage with its workspace and runtime rollups, and
//! the daily totals older daemons report per runtime.
//!
//! Buckets are `date` (UTC day) and `timestamptz` (start of the UTC hour)
//! here; the facade speaks text (`2026-11-23`, `2026-11-23T19`), so keys are
//! converted at the SQL boundary and formatted again in Rust. Saturating
//! sums go through `numeric`: a `bigint` sum past 64 bits is an error on
//! PostgreSQL, where SQLite's turns into a REAL that the clamps bring back.

use super::Client;

use crate::domain::{EntityId, RuntimeId, TaskId, Timestamp, UsageId, WorkspaceId};
use crate::store::usage::*;

/// The largest value a rollup column holds: sums saturate here.
const MAX: &str = "9223372036854775807";

/// Takes the task's row lock for the rest of the transaction and returns
/// the runtime it was dispatched to (`None` too when there is no such
/// task). Concurrent usage writes of one task wait here, on any
/// connection.
pub fn lock_task(conn: &mut Client, task: TaskId) -> Result<Option<TaskKeys>, postgres::Error> {
    let row = conn.query_opt(
        "SELECT runtime_id, agent_id FROM agent_task_queue WHERE id = $1 FOR UPDATE",
        &[&task],
    )?;
    match row {
        Some(row) => Ok(Some((row.try_get(0)?, row.try_get(1)?))),
        None => Ok(None),
    }
}

pub fn stored_task_usage(
    conn: &mut Client,
    task: TaskId,
    entry: &UsageEntry,
) -> Result<Option<StoredTaskUsage>, postgres::Error> {
    let row = conn.query_opt(
        "SELECT input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                cost_usd_ticks, created_at
         FROM task_usage WHERE task_id = $1 AND provider = $2 AND model = $3",
        &[&task, &entry.provider, &entry.model],
    )?;
    row.map(|r| {
        Ok(StoredTaskUsage {
            counts: [r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?],
            cost: r.try_get(4)?,
            created_at: r.try_get(5)?,
        })
    })
    .transpose()
}

pub fn of_task(conn: &mut Client, task: TaskId) -> Result<Vec<TaskUsage>, postgres::Error> {
    conn.query(
        "SELECT provider, model, input_tokens, output_tokens, cache_read_tokens,
                cache_write_tokens, cost_usd_ticks, created_at
         FROM task_usage WHERE task_id = $1 ORDER BY provider, model LIMIT $2",
        &[&task, &MAX_TASK_USAGE_ROWS],
    )?
    .iter()
    .map(|r| {
        Ok(TaskUsage {
            provider: r.try_get(0)?,
            model: r.try_get(1)?,
            input_tokens: r.try_get(2)?,
            output_tokens: r.try_get(3)?,
            cache_read_tokens: r.try_get(4)?,
            cache_write_tokens: r.try_get(5)?,
            cost_usd_ticks: r.try_get(6)?,
            created_at: r.try_get(7)?,
        })
    })
    .collect()
}

/// Whether the task already recorded usage of `model` (with any provider).
pub fn task_used_model(
    conn: &mut Client,
    task: TaskId,
    model: &str,
) -> Result<bool, postgres::Error> {
    conn.query_one(
        "SELECT EXISTS (SELECT 1 FROM task_usage WHERE task_id = $1 AND model = $2)",
        &[&task, &model],
    )?
    .try_get(0)
}

/// Inserts or replaces the task_usage row; a new row is dated `at`, an
/// existing one keeps its created_at.
pub fn write_task_usage(
    conn: &mut Client,
    task: TaskId,
    entry: &UsageEntry,
    cost_usd_ticks: Option<i64>,
    at: Timestamp,
) -> Result<(), postgres::Error> {
    conn.execute(
        "INSERT INTO task_usage (id, task_id, provider, model, input_tokens, output_tokens,
             cache_read_tokens, cache_write_tokens, cost_usd_ticks, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
         ON CONFLICT (task_id, provider, model) DO UPDATE SET
             input_tokens = excluded.input_tokens,
             output_tokens = excluded.output_tokens,
             cache_read_tokens = excluded.cache_read_tokens,
             cache_write_tokens = excluded.cache_write_tokens,
             cost_usd_ticks = excluded.cost_usd_ticks,
             updated_at = excluded.updated_at",
        &[
            &UsageId::new(),
            &task,
            &entry.provider,
            &entry.model,
            &entry.input_tokens,
            &entry.output_tokens,
            &entry.cache_read_tokens,
            &entry.cache_write_tokens,
            &cost_usd_ticks,
            &at,
        ],
    )?;
    Ok(())
}

/// The table and the key columns after the bucket of a block rollup.
fn block_table(which: Blocks) -> (&'static str, &'static [&'static str]) {
    match which {
        Blocks::Model => ("usage_block", &["provider", "model"]),
        Blocks::Agent => (
            "usage_agent_block",
            &["runtime_id", "agent_id", "provider", "model"],
        ),
    }
}

/// Moves every block a usage write recorded at `bucket` falls in, in both
/// block rollups, by `delta`: one statement each, a row per span (the
/// spans and starts as arrays).
pub fn add_to_blocks(
    conn: &mut Client,
    workspace: WorkspaceId,
    (runtime, agent): TaskKeys,
    bucket: Timestamp,
    entry: &UsageEntry,
    delta: &QuarterDelta,
) -> Result<(), postgres::Error> {
    let runtime = runtime.map_or(uuid::Uuid::nil(), |r| r.uuid());
    let agent = agent.map_or(uuid::Uuid::nil(), |a| a.uuid());
    let columns = QUARTER_COLUMNS;
    let values = delta.values();
    for which in [Blocks::Model, Blocks::Agent] {
        let (table, keys) = block_table(which);
        let spans: Vec<i32> = which
            .stored_spans()
            .iter()
            .map(|s| i32::try_from(*s).unwrap_or(i32::MAX))
            .collect();
        let starts = block_starts(which, bucket);
        // $1 workspace, $2 spans, $3 starts, $4.. the deltas, then the keys
        let first_key = 4 + columns.len();
        let key_params: Vec<String> = (0..keys.len())
            .map(|k| format!("${}", first_key + k))
            .collect();
        let counts: Vec<String> = (0..columns.len())
            .map(|c| format!("GREATEST(0, ${}::bigint)", 4 + c))
            .collect();
        let sets: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(c, column)| {
                format!(
                    "{column} = GREATEST(0, LEAST({table}.{column}::numeric + ${}::bigint, {MAX}))::bigint",
                    4 + c
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO {table} (workspace_id, span, bucket, {keys}, {columns})
             SELECT $1, s.span, s.bucket, {key_params}, {counts}
             FROM unnest($2::int[], $3::timestamptz[]) AS s(span, bucket)
             ON CONFLICT (workspace_id, span, bucket, {keys}) DO UPDATE SET {sets}",
            keys = keys.join(", "),
            columns = columns.join(", "),
            key_params = key_params.join(", "),
            counts = counts.join(", "),
            sets = sets.join(", "),
        );
        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> =
            vec![&workspace, &spans, &starts];
        for v in &values {
            params.push(v);
        }
        if which == Blocks::Agent {
            params.push(&runtime);
            params.push(&agent);
        }
        params.push(&entry.provider);
        params.push(&entry.model);
        conn.execute(&sql, &params)?;
    }
    Ok(())
}

/// A `date` column as the facade's text key: formatted here, where
/// `to_char` would cost the server more than the rest of the query.
fn date_key(row: &postgres::Row, idx: usize) -> Result<String, postgres::Error> {
    Ok(row.try_get::<_, chrono::NaiveDate>(idx)?.to_string())
}

/// Each run is one range of the (workspace_id, span, bucket) key, read by
/// a subquery of its own (`OFFSET 0` keeps the planner from flattening it
/// into one scan of the whole workspace, which it did for the quarter
/// hours: 410 ms against 12); the sums go through `numeric`, clamped at
/// i64::MAX.
///
/// The rows of a page by agent or runtime are added up in the server
/// (with the counts in the key's index, a 30-day page reads 10,000 rows
/// for 1,200 sums, which cost more to send than to add up); those of a
/// page by day, one or two a sum, in [`SumsByKey`].
///
/// The runs are all of one `source`: the facade splits them.
pub fn block_sums(
    conn: &mut Client,
    which: Blocks,
    workspace: WorkspaceId,
    runs: &[BlockRun],
    source: Source,
) -> Result<Vec<BlockSum>, postgres::Error> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let (table, keys) = block_table(which);
    let (table, span) = match source {
        Source::Blocks => (table, "AND b.span = r.span"),
        Source::Quarters => ("runtime_usage_quarter", ""),
        Source::ZoneDays => ("usage_zone_day", ""),
    };
    let spans: Vec<i32> = runs
        .iter()
        .map(|r| i32::try_from(r.span).unwrap_or(i32::MAX))
        .collect();
    let from: Vec<_> = runs.iter().map(|r| r.from).collect();
    let to: Vec<_> = runs.iter().map(|r| r.to).collect();
    let labels: Vec<i32> = runs
        .iter()
        .map(|r| i32::try_from(r.label).unwrap_or(i32::MAX))
        .collect();
    let keyed: Vec<String> = keys.iter().map(|k| format!("b.{k}")).collect();
    // the pages of whole windows add up about eight rows a sum (blocks of
    // several spans): the server adds them up; a page by day reads one or
    // two a sum, which cost less to send than to group
    let (columns, grouped) = if which == Blocks::Agent {
        let sums: Vec<String> = QUARTER_COLUMNS
            .iter()
            .map(|c| format!("LEAST(sum(b.{c}), {MAX})::bigint"))
            .collect();
        (sums, format!("GROUP BY r.label, {}", keyed.join(", ")))
    } else {
        let columns = QUARTER_COLUMNS.iter().map(|c| format!("b.{c}")).collect();
        (columns, String::new())
    };
    let rows = conn.query(
        &format!(
            "SELECT r.label, {keys}, {columns}
             FROM unnest($2::int[], $3::timestamptz[], $4::timestamptz[], $5::int[])
                 AS r(span, lo, hi, label)
             CROSS JOIN LATERAL (
                 SELECT * FROM {table} b WHERE b.workspace_id = $1 {span}
                     AND b.bucket >= r.lo AND b.bucket < r.hi
                 OFFSET 0) b
             {grouped}",
            keys = keyed.join(", "),
            columns = columns.join(", "),
        ),
        &[&workspace, &spans, &from, &to, &labels],
    )?;
    let mut sums = SumsByKey::default();
    for r in &rows {
        let label: i32 = r.try_get(0)?;
        let label = usize::try_from(label).unwrap_or(usize::MAX);
        let ids = match which {
            Blocks::Model => [None, None],
            Blocks::Agent => [Some(r.try_get::<_, uuid::Uuid>(1)?), Some(r.try_get(2)?)],
        };
        let first = if ids[0].is_some() { 3 } else { 1 };
        let (provider, model): (&str, &str) = (r.try_get(first)?, r.try_get(first + 1)?);
        let mut counts = [0i64; 10];
        for (i, count) in counts.iter_mut().enumerate() {
            *count = r.try_get(first + 2 + i)?;
        }
        // the key's text: the ids (simple form, on the stack) and names
        let (mut runtime_text, mut agent_text) = ([0u8; 32], [0u8; 32]);
        let mut key: [&[u8]; 4] = [b""; 4];
        let mut n = 0;
        for (id, text) in ids.iter().zip([&mut runtime_text, &mut agent_text]) {
            if let Some(id) = id {
                key[n] = id.simple().encode_lower(text).as_bytes();
                n += 1;
            }
        }
        key[n] = provider.as_bytes();
        key[n + 1] = model.as_bytes();
        let key = &key[..n + 2];
        sums.add(
            label,
            key,
            counts,
            || -> Result<BlockSum, postgres::Error> {
                Ok(BlockSum {
                    label,
                    runtime: ids[0].and_then(runtime_of),
                    agent: ids[1].and_then(agent_of),
                    provider: provider.to_string(),
                    model: model.to_string(),
                    counts,
                })
            },
        )?;
    }
    Ok(sums.into_sums())
}

/// Each run is one range of the (workspace_id, span, bucket) key; sums in
/// `numeric`, clamped at i64::MAX.
pub fn outcome_sums(
    conn: &mut Client,
    which: Blocks,
    workspace: WorkspaceId,
    runs: &[BlockRun],
) -> Result<Vec<OutcomeSum>, postgres::Error> {
    let (table, agent) = match which {
        Blocks::Model => ("task_outcome_block", "NULL::uuid"),
        Blocks::Agent => ("task_outcome_agent_block", "b.agent_id"),
    };
    let spans: Vec<i32> = runs
        .iter()
        .map(|r| i32::try_from(r.span).unwrap_or(i32::MAX))
        .collect();
    let from: Vec<_> = runs.iter().map(|r| r.from).collect();
    let to: Vec<_> = runs.iter().map(|r| r.to).collect();
    let labels: Vec<i32> = runs
        .iter()
        .map(|r| i32::try_from(r.label).unwrap_or(i32::MAX))
        .collect();
    let rows = conn.query(
        &format!(
            "SELECT r.label, {agent}, b.status, b.failure_reason,
                    LEAST(sum(b.task_count), {MAX})::bigint,
                    LEAST(sum(b.run_count), {MAX})::bigint,
                    LEAST(sum(b.run_seconds), {MAX})::bigint
             FROM unnest($2::int[], $3::timestamptz[], $4::timestamptz[], $5::int[])
                 AS r(span, lo, hi, label)
             CROSS JOIN LATERAL (
                 SELECT * FROM {table} b WHERE b.workspace_id = $1 AND b.span = r.span
                     AND b.bucket >= r.lo AND b.bucket < r.hi
                 OFFSET 0) b
             GROUP BY 1, 2, 3, 4"
        ),
        &[&workspace, &spans, &from, &to, &labels],
    )?;
    rows.iter()
        .map(|r| {
            let label: i32 = r.try_get(0)?;
            let agent: Option<uuid::Uuid> = r.try_get(1)?;
            Ok(OutcomeSum {
                label: usize::try_from(label).unwrap_or(usize::MAX),
                agent: agent.and_then(agent_of),
                status: r.try_get(2)?,
                failure_reason: r.try_get(3)?,
                task_count: r.try_get(4)?,
                run_count: r.try_get(5)?,
                run_seconds: r.try_get(6)?,
            })
        })
        .collect()
}

/// Moves the (runtime, quarter, agent, provider, model) rollup by `delta`.
pub fn add_to_quarter_rollup(
    conn: &mut Client,
    workspace: WorkspaceId,
    place: &TaskPlace,
    bucket: Timestamp,
    entry: &UsageEntry,
    delta: &QuarterDelta,
) -> Result<(), postgres::Error> {
    let columns = QUARTER_COLUMNS;
    let (values, sets) = added_counts("runtime_usage_quarter", 7);
    let agent = place.agent.map_or(uuid::Uuid::nil(), |a| a.uuid());
    let params = delta.values();
    conn.execute(
        &format!(
            "INSERT INTO runtime_usage_quarter (runtime_id, bucket, agent_id, provider, model,
                 workspace_id, {})
             VALUES ($1, date_bin('15 minutes', $2::timestamptz, '2000-01-01 00:00:00+00'),
                 $3, $4, $5, $6, {})
             ON CONFLICT (runtime_id, bucket, agent_id, provider, model) DO UPDATE SET {}",
            columns.join(", "),
            values,
            sets
        ),
        &[
            &place.runtime,
            &bucket,
            &agent,
            &entry.provider,
            &entry.model,
            &workspace,
            &params[0],
            &params[1],
            &params[2],
            &params[3],
            &params[4],
            &params[5],
            &params[6],
            &params[7],
            &params[8],
            &params[9],
        ],
    )?;
    Ok(())
}

/// One row per quarter bucket.
pub fn runtime_quarters_since(
    conn: &mut Client,
    runtime: RuntimeId,
    from: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<QuarterUsage>, postgres::Error> {
    conn.query(
        &format!(
            "SELECT bucket, agent_id, provider, model, {}
             FROM runtime_usage_quarter WHERE runtime_id = $1 AND bucket >= $2 LIMIT $3",
            QUARTER_COLUMNS.join(", ")
        ),
        &[&runtime, &from, &(MAX_RUNTIME_QUARTERS + 1)],
    )?
    .iter()
    .map(|r| {
        let mut counts = [0i64; 10];
        for (i, count) in counts.iter_mut().enumerate() {
            *count = r.try_get(4 + i)?;
        }
        Ok(QuarterUsage {
            bucket: r.try_get(0)?,
            agent_id: agent_of(r.try_get(1)?),
            provider: r.try_get(2)?,
            model: r.try_get(3)?,
            counts,
        })
    })
    .collect()
}

pub fn upsert_runtime_usage(
    conn: &mut Client,
    runtime: RuntimeId,
    date: &str,
    entry: &UsageEntry,
    at: Timestamp,
) -> Result<(), postgres::Error> {
    conn.execute(
        "INSERT INTO runtime_usage (id, runtime_id, date, provider, model, input_tokens,
             output_tokens, cache_read_tokens, cache_write_tokens, created_at, updated_at)
         VALUES ($1, $2, $3::text::date, $4, $5, $6, $7, $8, $9, $10, $10)
         ON CONFLICT (runtime_id, date, provider, model) DO UPDATE SET
             input_tokens = excluded.input_tokens,
             output_tokens = excluded.output_tokens,
             cache_read_tokens = excluded.cache_read_tokens,
             cache_write_tokens = excluded.cache_write_tokens,
             updated_at = excluded.updated_at",
        &[
            &UsageId::new(),
            &runtime,
            &date,
            &entry.provider,
            &entry.model,
            &entry.input_tokens,
            &entry.output_tokens,
            &entry.cache_read_tokens,
            &entry.cache_write_tokens,
            &at,
        ],
    )?;
    Ok(())
}

pub fn runtime_reports(
    conn: &mut Client,
    runtime: RuntimeId,
    from: &str,
) -> Result<Vec<RuntimeUsage>, postgres::Error> {
    conn.query(
        "SELECT date, provider, model, input_tokens, output_tokens,
                cache_read_tokens, cache_write_tokens
         FROM runtime_usage WHERE runtime_id = $1 AND date >= $2::text::date",
        &[&runtime, &from],
    )?
    .iter()
    .map(|r| {
        Ok(RuntimeUsage {
            runtime_id: runtime,
            date: date_key(r, 0)?,
            provider: r.try_get(1)?,
            model: r.try_get(2)?,
            input_tokens: r.try_get(3)?,
            output_tokens: r.try_get(4)?,
            cache_read_tokens: r.try_get(5)?,
            cache_write_tokens: r.try_get(6)?,
            cost_usd_ticks: None,
            source: UsageSource::RuntimeReport,
        })
    })
    .collect()
}

/// The zone the workspace's `usage_zone_day` rows are local days of.
pub fn day_zone(
    conn: &mut Client,
    workspace: WorkspaceId,
) -> Result<Option<String>, postgres::Error> {
    let row = conn.query_opt(
        "SELECT day_zone FROM workspace WHERE id = $1",
        &[&workspace],
    )?;
    row.map(|r| r.try_get(0)).transpose()
}

/// The values and the `ON CONFLICT` assignments that add the counts of
/// [`QUARTER_COLUMNS`], parameters `$first` on, to a row of `table`: a new
/// row takes no negative count, a stored one stays within 0..=i64::MAX.
fn added_counts(table: &str, first: usize) -> (String, String) {
    let values: Vec<String> = (0..QUARTER_COLUMNS.len())
        .map(|i| format!("GREATEST(0, ${}::bigint)", first + i))
        .collect();
    let sets: Vec<String> = QUARTER_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{c} = GREATEST(0, LEAST({table}.{c}::numeric + ${}::bigint, {MAX}))::bigint",
                first + i
            )
        })
        .collect();
    (values.join(", "), sets.join(", "))
}

/// Moves the workspace's local day that starts at `day` by `counts`
/// ([`QUARTER_COLUMNS`] order) for the entry's provider and model.
pub fn add_to_zone_day(
    conn: &mut Client,
    workspace: WorkspaceId,
    day: chrono::DateTime<chrono::Utc>,
    entry: &UsageEntry,
    counts: &[i64; 10],
) -> Result<(), postgres::Error> {
    let columns = QUARTER_COLUMNS;
    let (values, sets) = added_counts("usage_zone_day", 5);
    let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> =
        vec![&workspace, &day, &entry.provider, &entry.model];
    params.extend(
        counts
            .iter()
            .map(|c| c as &(dyn postgres::types::ToSql + Sync)),
    );
    conn.execute(
        &format!(
            "INSERT INTO usage_zone_day (workspace_id, bucket, provider, model, {})
             VALUES ($1, $2, $3, $4, {})
             ON CONFLICT (workspace_id, bucket, provider, model) DO UPDATE SET {}",
            columns.join(", "),
            values,
            sets
        ),
        &params,
    )?;
    Ok(())
}

/// Writes the rows of a rebuild (after [`clear_zone_days`]: none is
/// there yet), in one statement.
pub fn insert_zone_days(
    conn: &mut Client,
    workspace: WorkspaceId,
    rows: &[ZoneDay],
) -> Result<(), postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let columns = QUARTER_COLUMNS;
    let starts: Vec<_> = rows.iter().map(|r| r.start).collect();
    let providers: Vec<&str> = rows.iter().map(|r| r.provider.as_str()).collect();
    let models: Vec<&str> = rows.iter().map(|r| r.model.as_str()).collect();
    let counts: Vec<Vec<i64>> = (0..columns.len())
        .map(|i| rows.iter().map(|r| r.counts[i]).collect())
        .collect();
    let arrays: Vec<String> = (0..columns.len())
        .map(|i| format!("${}::bigint[]", i + 5))
        .collect();
    let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> =
        vec![&workspace, &starts, &providers, &models];
    params.extend(
        counts
            .iter()
            .map(|c| c as &(dyn postgres::types::ToSql + Sync)),
    );
    conn.execute(
        &format!(
            "INSERT INTO usage_zone_day (workspace_id, bucket, provider, model, {})
             SELECT $1, * FROM unnest($2::timestamptz[], $3::text[], $4::text[], {})",
            columns.join(", "),
            arrays.join(", "),
        ),
        &params,
    )?;
    Ok(())
}

/// Drops the workspace's zone days and records `zone` as theirs.
pub fn clear_zone_days(
    conn: &mut Client,
    workspace: WorkspaceId,
    zone: &str,
) -> Result<(), postgres::Error> {
    conn.execute(
        "DELETE FROM usage_zone_day WHERE workspace_id = $1",
        &[&workspace],
    )?;
    conn.execute(
        "UPDATE workspace SET day_zone = $2 WHERE id = $1",
        &[&workspace, &zone],
    )?;
    Ok(())
}

/// The first and the last UTC day the workspace has task usage on.
pub fn usage_days(
    conn: &mut Client,
    workspace: WorkspaceId,
) -> Result<Option<(chrono::NaiveDate, chrono::NaiveDate)>, postgres::Error> {
    let row = conn.query_one(
        "SELECT (min(bucket) AT TIME ZONE 'UTC')::date, (max(bucket) AT TIME ZONE 'UTC')::date
         FROM usage_block WHERE workspace_id = $1 AND span = 1440",
        &[&workspace],
    )?;
    let (first, last): (Option<chrono::NaiveDate>, Option<chrono::NaiveDate>) =
        (row.try_get(0)?, row.try_get(1)?);
    Ok(first.zip(last))
}

/// The workspaces whose zone days are not days of their time zone, with
/// that zone.
pub fn zones_apart(conn: &mut Client) -> Result<Vec<(WorkspaceId, String)>, postgres::Error> {
    conn.query(
        "SELECT id, timezone FROM workspace WHERE day_zone <> timezone",
        &[],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}
