//! Token usage: per-task usage with its workspace and runtime rollups, and
//! the daily totals older daemons report per runtime.

use rusqlite::{params, Connection, OptionalExtension};

use crate::domain::{AgentId, RuntimeId, TaskId, Timestamp, UsageId, WorkspaceId};
use crate::store::usage::*;

/// Takes the task's row lock for the rest of the transaction and returns
/// the runtime it was dispatched to. The write changes nothing (`error` is
/// in no index and no trigger): SQLite's write transaction already holds
/// the whole file; an engine with row locks makes concurrent usage writes
/// of one task wait here.
pub fn lock_task(conn: &Connection, task: TaskId) -> rusqlite::Result<Option<TaskPlace>> {
    Ok(conn
        .prepare_cached(
            "UPDATE agent_task_queue SET error = error WHERE id = ?1
             RETURNING runtime_id, agent_id",
        )?
        .query_row([task], |r| {
            let runtime: Option<RuntimeId> = r.get(0)?;
            let agent: Option<AgentId> = r.get(1)?;
            Ok(runtime.map(|runtime| TaskPlace { runtime, agent }))
        })
        .optional()?
        .flatten())
}

pub fn stored_task_usage(
    conn: &Connection,
    task: TaskId,
    entry: &UsageEntry,
) -> rusqlite::Result<Option<StoredTaskUsage>> {
    conn.prepare_cached(
        "SELECT input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                cost_usd_ticks, created_at
         FROM task_usage WHERE task_id = ?1 AND provider = ?2 AND model = ?3",
    )?
    .query_row(params![task, entry.provider, entry.model], |r| {
        Ok(StoredTaskUsage {
            counts: [r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?],
            cost: r.get(4)?,
            created_at: r.get(5)?,
        })
    })
    .optional()
}

pub fn of_task(conn: &Connection, task: TaskId) -> rusqlite::Result<Vec<TaskUsage>> {
    let mut stmt = conn.prepare_cached(
        "SELECT provider, model, input_tokens, output_tokens, cache_read_tokens,
                cache_write_tokens, cost_usd_ticks, created_at
         FROM task_usage WHERE task_id = ?1 ORDER BY provider, model LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![task, MAX_TASK_USAGE_ROWS], |r| {
        Ok(TaskUsage {
            provider: r.get(0)?,
            model: r.get(1)?,
            input_tokens: r.get(2)?,
            output_tokens: r.get(3)?,
            cache_read_tokens: r.get(4)?,
            cache_write_tokens: r.get(5)?,
            cost_usd_ticks: r.get(6)?,
            created_at: r.get(7)?,
        })
    })?;
    rows.collect()
}

/// Whether the task already recorded usage of `model` (with any provider).
pub fn task_used_model(conn: &Connection, task: TaskId, model: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM task_usage WHERE task_id = ?1 AND model = ?2)",
    )?
    .query_row(params![task, model], |r| r.get(0))
}

/// Inserts or replaces the task_usage row; a new row is dated `at`, an
/// existing one keeps its created_at.
pub fn write_task_usage(
    conn: &Connection,
    task: TaskId,
    entry: &UsageEntry,
    cost_usd_ticks: Option<i64>,
    at: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO task_usage (id, task_id, provider, model, input_tokens, output_tokens,
             cache_read_tokens, cache_write_tokens, cost_usd_ticks, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)
         ON CONFLICT (task_id, provider, model) DO UPDATE SET
             input_tokens = excluded.input_tokens,
             output_tokens = excluded.output_tokens,
             cache_read_tokens = excluded.cache_read_tokens,
             cache_write_tokens = excluded.cache_write_tokens,
             cost_usd_ticks = excluded.cost_usd_ticks,
             updated_at = excluded.updated_at",
    )?
    .execute(params![
        UsageId::new(),
        task,
        entry.provider,
        entry.model,
        entry.input_tokens,
        entry.output_tokens,
        entry.cache_read_tokens,
        entry.cache_write_tokens,
        cost_usd_ticks,
        at
    ])?;
    Ok(())
}

/// Moves the daily and hourly workspace rollups of `model` by `delta`.
pub fn add_to_workspace_rollups(
    conn: &Connection,
    workspace: WorkspaceId,
    model: &str,
    bucket: Timestamp,
    delta: [i64; 4],
    new_task: bool,
) -> rusqlite::Result<()> {
    let buckets = [
        ("usage_daily", "date", day_of(bucket)),
        ("usage_hourly", "hour", hour_of(bucket)),
    ];
    for (table, key, value) in buckets {
        conn.prepare_cached(&format!(
            "INSERT INTO {table} (workspace_id, {key}, model, input_tokens, output_tokens,
                 cache_read_tokens, cache_write_tokens, task_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (workspace_id, {key}, model) DO UPDATE SET
                 input_tokens = {input},
                 output_tokens = {output},
                 cache_read_tokens = {cache_read},
                 cache_write_tokens = {cache_write},
                 task_count = {task_count}",
            input = saturating_add("input_tokens"),
            output = saturating_add("output_tokens"),
            cache_read = saturating_add("cache_read_tokens"),
            cache_write = saturating_add("cache_write_tokens"),
            task_count = saturating_add("task_count"),
        ))?
        .execute(params![
            workspace,
            value,
            model,
            delta[0],
            delta[1],
            delta[2],
            delta[3],
            i64::from(new_task)
        ])?;
    }
    Ok(())
}

/// Moves the (runtime, date, provider, model) rollup by `delta`, and its
/// cost by `cost_delta` (`None`: no cost was ever reported for this row).
pub fn add_to_runtime_rollup(
    conn: &Connection,
    runtime: RuntimeId,
    date: &str,
    entry: &UsageEntry,
    delta: [i64; 4],
    cost_delta: Option<i64>,
) -> rusqlite::Result<()> {
    // the update adds the parameters rather than `excluded`, which the
    // insert clamps at 0 for a first row
    let add = |column: &str, param: usize| {
        format!("{column} = max(0, min({column} + ?{param}, 9223372036854775807))")
    };
    conn.prepare_cached(&format!(
        "INSERT INTO runtime_task_usage_daily (runtime_id, date, provider, model, input_tokens,
             output_tokens, cache_read_tokens, cache_write_tokens, cost_usd_ticks)
         VALUES (?1, ?2, ?3, ?4, max(0, ?5), max(0, ?6), max(0, ?7), max(0, ?8), max(0, ?9))
         ON CONFLICT (runtime_id, date, provider, model) DO UPDATE SET
             {}, {}, {}, {},
             cost_usd_ticks = CASE WHEN ?9 IS NULL THEN cost_usd_ticks
                 ELSE max(0, min(coalesce(cost_usd_ticks, 0) + ?9, 9223372036854775807)) END",
        add("input_tokens", 5),
        add("output_tokens", 6),
        add("cache_read_tokens", 7),
        add("cache_write_tokens", 8),
    ))?
    .execute(params![
        runtime,
        date,
        entry.provider,
        entry.model,
        delta[0],
        delta[1],
        delta[2],
        delta[3],
        cost_delta
    ])?;
    Ok(())
}

/// SQL that adds `excluded.<column>` to a rollup column and keeps the
/// result within 0..=i64::MAX. SQLite turns an integer sum that leaves 64
/// bits into a REAL, which a STRICT INTEGER column refuses, so an unclamped
/// sum would fail every later write of that bucket.
fn saturating_add(column: &str) -> String {
    format!("max(0, min({column} + excluded.{column}, 9223372036854775807))")
}

fn buckets(
    conn: &Connection,
    sql: &str,
    workspace: WorkspaceId,
    from: &str,
    to: &str,
) -> rusqlite::Result<Vec<Bucket>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params![workspace, from, to], |r| {
        Ok(Bucket {
            key: r.get(0)?,
            model: r.get(1)?,
            input_tokens: r.get(2)?,
            output_tokens: r.get(3)?,
            cache_read_tokens: r.get(4)?,
            cache_write_tokens: r.get(5)?,
            task_count: r.get(6)?,
        })
    })?;
    rows.collect()
}

pub fn daily(
    conn: &Connection,
    workspace: WorkspaceId,
    from: &str,
    to: &str,
) -> rusqlite::Result<Vec<Bucket>> {
    buckets(
        conn,
        "SELECT date, model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                task_count
         FROM usage_daily WHERE workspace_id = ?1 AND date BETWEEN ?2 AND ?3",
        workspace,
        from,
        to,
    )
}

fn hourly(
    conn: &Connection,
    workspace: WorkspaceId,
    from: &str,
    to: &str,
) -> rusqlite::Result<Vec<Bucket>> {
    buckets(
        conn,
        "SELECT hour, model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                task_count
         FROM usage_hourly WHERE workspace_id = ?1 AND hour >= ?2 AND hour < ?3",
        workspace,
        from,
        to,
    )
}

/// The hourly rows of the runs' span, added up here by date: SQLite's
/// `sum()` fails past 64 bits instead of saturating.
pub fn by_hour_runs(
    conn: &Connection,
    workspace: WorkspaceId,
    runs: &HourRuns,
) -> rusqlite::Result<Vec<Bucket>> {
    let keys: Vec<String> = runs.bounds.iter().map(hour_key).collect();
    let (Some(from), Some(to)) = (keys.first(), keys.last()) else {
        return Ok(Vec::new());
    };
    let mut grouped: std::collections::HashMap<(String, String), Bucket> =
        std::collections::HashMap::new();
    for b in hourly(conn, workspace, from, to)? {
        let Some(date) = runs.date_of(&keys, &b.key) else {
            continue;
        };
        let entry = grouped
            .entry((date.to_string(), b.model.clone()))
            .or_insert_with(|| Bucket {
                key: date.to_string(),
                model: b.model.clone(),
                input_tokens: 0,
                output_tokens: 0,
                cache_read_tokens: 0,
                cache_write_tokens: 0,
                task_count: 0,
            });
        add_bucket(entry, &b);
    }
    Ok(grouped.into_values().collect())
}

/// Moves the (runtime, quarter, agent, provider, model) rollup by `delta`;
/// the bucket is the stored time's first 14 characters and its quarter.
pub fn add_to_quarter_rollup(
    conn: &Connection,
    workspace: WorkspaceId,
    place: &TaskPlace,
    bucket: Timestamp,
    entry: &UsageEntry,
    delta: &QuarterDelta,
) -> rusqlite::Result<()> {
    let columns = QUARTER_COLUMNS;
    let sets: Vec<String> = (0..columns.len())
        .map(|i| {
            format!(
                "{c} = max(0, min({c} + ?{p}, 9223372036854775807))",
                c = columns[i],
                p = i + 7
            )
        })
        .collect();
    let values: Vec<String> = (0..columns.len())
        .map(|i| format!("max(0, ?{})", i + 7))
        .collect();
    let agent = place
        .agent
        .map_or_else(|| uuid::Uuid::nil().to_string(), |a| a.to_string());
    let p = delta.values();
    conn.prepare_cached(&format!(
        "INSERT INTO runtime_usage_quarter (runtime_id, bucket, agent_id, provider, model,
             workspace_id, {})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, {})
         ON CONFLICT (runtime_id, bucket, agent_id, provider, model) DO UPDATE SET {}",
        columns.join(", "),
        values.join(", "),
        sets.join(", ")
    ))?
    .execute(params![
        place.runtime,
        quarter_key(bucket),
        agent,
        entry.provider,
        entry.model,
        workspace,
        p[0],
        p[1],
        p[2],
        p[3],
        p[4],
        p[5],
        p[6],
        p[7],
        p[8],
        p[9]
    ])?;
    Ok(())
}

/// One row per quarter bucket.
pub fn runtime_quarters_since(
    conn: &Connection,
    runtime: RuntimeId,
    from: chrono::DateTime<chrono::Utc>,
) -> rusqlite::Result<Vec<QuarterUsage>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT bucket, agent_id, provider, model, {}
         FROM runtime_usage_quarter WHERE runtime_id = ?1 AND bucket >= ?2",
        QUARTER_COLUMNS.join(", ")
    ))?;
    let from = from.format("%Y-%m-%dT%H:%M").to_string();
    let rows = stmt.query_map(params![runtime, from], |r| {
        let bucket: String = r.get(0)?;
        let bucket = chrono::NaiveDateTime::parse_from_str(&bucket, "%Y-%m-%dT%H:%M")
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?
            .and_utc();
        let agent: String = r.get(1)?;
        let agent = uuid::Uuid::parse_str(&agent).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?;
        let mut counts = [0i64; 10];
        for (i, count) in counts.iter_mut().enumerate() {
            *count = r.get(4 + i)?;
        }
        Ok(QuarterUsage {
            bucket,
            agent_id: agent_of(agent),
            provider: r.get(2)?,
            model: r.get(3)?,
            counts,
        })
    })?;
    rows.collect()
}

pub fn upsert_runtime_usage(
    conn: &Connection,
    runtime: RuntimeId,
    date: &str,
    entry: &UsageEntry,
    at: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO runtime_usage (id, runtime_id, date, provider, model, input_tokens,
             output_tokens, cache_read_tokens, cache_write_tokens, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)
         ON CONFLICT (runtime_id, date, provider, model) DO UPDATE SET
             input_tokens = excluded.input_tokens,
             output_tokens = excluded.output_tokens,
             cache_read_tokens = excluded.cache_read_tokens,
             cache_write_tokens = excluded.cache_write_tokens,
             updated_at = excluded.updated_at",
    )?
    .execute(params![
        UsageId::new(),
        runtime,
        date,
        entry.provider,
        entry.model,
        entry.input_tokens,
        entry.output_tokens,
        entry.cache_read_tokens,
        entry.cache_write_tokens,
        at
    ])?;
    Ok(())
}

pub fn runtime_usage(
    conn: &Connection,
    runtime: RuntimeId,
    from: &str,
    source: UsageSource,
) -> rusqlite::Result<Vec<RuntimeUsage>> {
    let (table, cost) = match source {
        UsageSource::RuntimeReport => ("runtime_usage", "NULL"),
        UsageSource::TaskUsage => ("runtime_task_usage_daily", "cost_usd_ticks"),
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT date, provider, model, input_tokens, output_tokens, cache_read_tokens,
                cache_write_tokens, {cost}
         FROM {table} WHERE runtime_id = ?1 AND date >= ?2"
    ))?;
    let rows = stmt.query_map(params![runtime, from], |r| {
        Ok(RuntimeUsage {
            runtime_id: runtime,
            date: r.get(0)?,
            provider: r.get(1)?,
            model: r.get(2)?,
            input_tokens: r.get(3)?,
            output_tokens: r.get(4)?,
            cache_read_tokens: r.get(5)?,
            cache_write_tokens: r.get(6)?,
            cost_usd_ticks: r.get(7)?,
            source,
        })
    })?;
    rows.collect()
}
