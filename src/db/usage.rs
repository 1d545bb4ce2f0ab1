//! Token usage: per-task usage with its workspace rollups, and the daily
//! totals daemons report per runtime.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::domain::Id;

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

/// Stores a task's usage for (provider, model), replacing what was stored
/// (daemons send running totals), and moves the workspace rollups by the
/// difference in the same transaction. The row keeps the bucket of its
/// first recording; a (task, model) pair counts once in `task_count`.
pub fn upsert_task_usage(
    conn: &Connection,
    task: Id,
    workspace: Id,
    entry: &UsageEntry,
    at: &str,
) -> rusqlite::Result<()> {
    let old: Option<(i64, i64, i64, i64, String)> = conn
        .prepare_cached(
            "SELECT input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, created_at
             FROM task_usage WHERE task_id = ?1 AND provider = ?2 AND model = ?3",
        )?
        .query_row(params![task, entry.provider, entry.model], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    let counts = [
        entry.input_tokens,
        entry.output_tokens,
        entry.cache_read_tokens,
        entry.cache_write_tokens,
    ];
    let (delta, bucket, new_task) = match old {
        Some((i, o, cr, cw, created_at)) => {
            conn.prepare_cached(
                "UPDATE task_usage SET input_tokens = ?4, output_tokens = ?5,
                     cache_read_tokens = ?6, cache_write_tokens = ?7, updated_at = ?8
                 WHERE task_id = ?1 AND provider = ?2 AND model = ?3",
            )?
            .execute(params![
                task,
                entry.provider,
                entry.model,
                counts[0],
                counts[1],
                counts[2],
                counts[3],
                at
            ])?;
            let delta = [
                counts[0].saturating_sub(i),
                counts[1].saturating_sub(o),
                counts[2].saturating_sub(cr),
                counts[3].saturating_sub(cw),
            ];
            (delta, created_at, false)
        }
        None => {
            let seen_model: bool = conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM task_usage WHERE task_id = ?1 AND model = ?2)",
                )?
                .query_row(params![task, entry.model], |r| r.get(0))?;
            conn.prepare_cached(
                "INSERT INTO task_usage (id, task_id, provider, model, input_tokens, output_tokens,
                     cache_read_tokens, cache_write_tokens, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
            )?
            .execute(params![
                Id::new(),
                task,
                entry.provider,
                entry.model,
                counts[0],
                counts[1],
                counts[2],
                counts[3],
                at
            ])?;
            (counts, at.to_string(), !seen_model)
        }
    };
    let buckets = [
        ("usage_daily", "date", &bucket[..10]),
        ("usage_hourly", "hour", &bucket[..13]),
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
            entry.model,
            delta[0],
            delta[1],
            delta[2],
            delta[3],
            i64::from(new_task)
        ])?;
    }
    Ok(())
}

/// SQL that adds `excluded.<column>` to a rollup column and keeps the
/// result within 0..=i64::MAX. SQLite turns an integer sum that leaves 64
/// bits into a REAL, which a STRICT INTEGER column refuses, so an unclamped
/// sum would fail every later write of that bucket.
fn saturating_add(column: &str) -> String {
    format!("max(0, min({column} + excluded.{column}, 9223372036854775807))")
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

fn buckets(
    conn: &Connection,
    sql: &str,
    workspace: Id,
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

/// UTC days `from..=to` (YYYY-MM-DD), newest first.
pub fn daily(
    conn: &Connection,
    workspace: Id,
    from: &str,
    to: &str,
) -> rusqlite::Result<Vec<Bucket>> {
    buckets(
        conn,
        "SELECT date, model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                task_count
         FROM usage_daily WHERE workspace_id = ?1 AND date BETWEEN ?2 AND ?3
         ORDER BY date DESC, model",
        workspace,
        from,
        to,
    )
}

/// UTC hours `from..to` (YYYY-MM-DDTHH, `to` excluded), oldest first.
pub fn hourly(
    conn: &Connection,
    workspace: Id,
    from: &str,
    to: &str,
) -> rusqlite::Result<Vec<Bucket>> {
    buckets(
        conn,
        "SELECT hour, model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                task_count
         FROM usage_hourly WHERE workspace_id = ?1 AND hour >= ?2 AND hour < ?3
         ORDER BY hour, model",
        workspace,
        from,
        to,
    )
}

/// A runtime's daily usage as reported by its daemon.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeUsage {
    pub runtime_id: Id,
    pub date: String,
    pub provider: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
}

/// Stores a daemon's day total for (runtime, date, provider, model),
/// replacing what was stored.
pub fn upsert_runtime_usage(
    conn: &Connection,
    runtime: Id,
    date: &str,
    entry: &UsageEntry,
    at: &str,
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
        Id::new(),
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

/// A runtime's reported usage on dates `>= from`, newest first.
pub fn runtime_usage(
    conn: &Connection,
    runtime: Id,
    from: &str,
) -> rusqlite::Result<Vec<RuntimeUsage>> {
    let mut stmt = conn.prepare_cached(
        "SELECT date, provider, model, input_tokens, output_tokens, cache_read_tokens,
                cache_write_tokens
         FROM runtime_usage WHERE runtime_id = ?1 AND date >= ?2
         ORDER BY date DESC, provider, model",
    )?;
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
        })
    })?;
    rows.collect()
}
