//! Token usage: per-task usage with its workspace and runtime rollups, and
//! the daily totals older daemons report per runtime.

use rusqlite::{params, Connection, OptionalExtension};

use crate::domain::{AgentId, RuntimeId, TaskId, Timestamp, UsageId, WorkspaceId};
use crate::store::usage::*;

/// Takes the task's row lock for the rest of the transaction and returns
/// its runtime and agent. The write changes nothing (`error` is
/// in no index and no trigger): SQLite's write transaction already holds
/// the whole file; an engine with row locks makes concurrent usage writes
/// of one task wait here.
pub fn lock_task(conn: &Connection, task: TaskId) -> rusqlite::Result<Option<TaskKeys>> {
    conn.prepare_cached(
        "UPDATE agent_task_queue SET error = error WHERE id = ?1
         RETURNING runtime_id, agent_id",
    )?
    .query_row([task], |r| {
        let runtime: Option<RuntimeId> = r.get(0)?;
        let agent: Option<AgentId> = r.get(1)?;
        Ok((runtime, agent))
    })
    .optional()
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

/// The table and the key columns after the bucket of a block rollup.
pub(super) fn block_table(which: Blocks) -> (&'static str, &'static [&'static str]) {
    match which {
        Blocks::Model => ("usage_block", &["provider", "model"]),
        Blocks::Agent => (
            "usage_agent_block",
            &["runtime_id", "agent_id", "provider", "model"],
        ),
    }
}

/// Moves every block a usage write recorded at `bucket` falls in, in both
/// block rollups, by `delta`: one upsert of a row per span each.
pub fn add_to_blocks(
    conn: &Connection,
    workspace: WorkspaceId,
    (runtime, agent): TaskKeys,
    bucket: Timestamp,
    entry: &UsageEntry,
    delta: &QuarterDelta,
) -> rusqlite::Result<()> {
    use rusqlite::types::Value;
    let nil = uuid::Uuid::nil().to_string();
    let runtime = runtime.map_or_else(|| nil.clone(), |r| r.to_string());
    let agent = agent.map_or_else(|| nil.clone(), |a| a.to_string());
    let columns = QUARTER_COLUMNS;
    for which in [Blocks::Model, Blocks::Agent] {
        let (table, keys) = block_table(which);
        let spans = which.stored_spans();
        // ?1 workspace, ?2.. the keys, then the deltas, then the buckets
        let first_delta = 2 + keys.len();
        let first_bucket = first_delta + columns.len();
        let rows: Vec<String> = spans
            .iter()
            .enumerate()
            .map(|(i, span)| {
                let keys: Vec<String> = (0..keys.len()).map(|k| format!("?{}", k + 2)).collect();
                let counts: Vec<String> = (0..columns.len())
                    .map(|c| format!("max(0, ?{})", first_delta + c))
                    .collect();
                format!(
                    "(?1, {span}, ?{}, {}, {})",
                    first_bucket + i,
                    keys.join(", "),
                    counts.join(", ")
                )
            })
            .collect();
        let sets: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(c, column)| {
                format!(
                    "{column} = max(0, min({column} + ?{}, 9223372036854775807))",
                    first_delta + c
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO {table} (workspace_id, span, bucket, {keys}, {columns})
             VALUES {rows}
             ON CONFLICT (workspace_id, span, bucket, {keys}) DO UPDATE SET {sets}",
            keys = keys.join(", "),
            columns = columns.join(", "),
            rows = rows.join(", "),
            sets = sets.join(", "),
        );
        let mut params: Vec<Value> = vec![Value::Text(workspace.to_string())];
        if which == Blocks::Agent {
            params.push(Value::Text(runtime.clone()));
            params.push(Value::Text(agent.clone()));
        }
        params.push(Value::Text(entry.provider.clone()));
        params.push(Value::Text(entry.model.clone()));
        params.extend(delta.values().into_iter().map(Value::Integer));
        params.extend(
            block_starts(which, bucket)
                .iter()
                .map(|b| Value::Text(b.format("%Y-%m-%dT%H:%M").to_string())),
        );
        conn.prepare_cached(&sql)?
            .execute(rusqlite::params_from_iter(params))?;
    }
    Ok(())
}

/// Adds up the blocks of all runs in one statement (the runs a JSON list
/// the statement walks first, seeking the key's index for each), per label
/// and key in [`SumsByKey`].
///
/// The runs are all of one `source`: the facade splits them.
pub fn block_sums(
    conn: &Connection,
    which: Blocks,
    workspace: WorkspaceId,
    runs: &[BlockRun],
    source: Source,
) -> rusqlite::Result<Vec<BlockSum>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let (table, keys) = block_table(which);
    let (table, span) = match source {
        Source::Blocks => (table, "AND b.span = r.span"),
        Source::Quarters => ("runtime_usage_quarter", ""),
        Source::ZoneDays => ("usage_zone_day", ""),
    };
    let key = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M").to_string();
    let list: Vec<(i64, String, String, usize)> = runs
        .iter()
        .map(|r| (r.span, key(&r.from), key(&r.to), r.label))
        .collect();
    let columns: Vec<String> = QUARTER_COLUMNS.iter().map(|c| format!("b.{c}")).collect();
    let keyed: Vec<String> = keys.iter().map(|k| format!("b.{k}")).collect();
    // the runs taken out of their JSON once (a flattened subquery would
    // extract them again for every row); CROSS JOIN keeps them the outer
    // loop
    let sql = format!(
        "WITH r AS MATERIALIZED (
             SELECT json_extract(value, '$[0]') AS span, json_extract(value, '$[1]') AS lo,
                    json_extract(value, '$[2]') AS hi, json_extract(value, '$[3]') AS label
             FROM json_each(?2))
         SELECT r.label, {keys}, {columns}
         FROM r CROSS JOIN {table} AS b
         ON b.workspace_id = ?1 {span} AND b.bucket >= r.lo AND b.bucket < r.hi",
        keys = keyed.join(", "),
        columns = columns.join(", "),
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![workspace, json_list(&list)?])?;
    let mut sums = SumsByKey::default();
    while let Some(r) = rows.next()? {
        let label: i64 = r.get(0)?;
        let label = usize::try_from(label).unwrap_or(usize::MAX);
        let mut key: [&[u8]; 4] = [b""; 4];
        for (k, text) in key.iter_mut().take(keys.len()).enumerate() {
            *text = r.get_ref(1 + k)?.as_bytes()?;
        }
        let mut counts = [0i64; 10];
        for (i, count) in counts.iter_mut().enumerate() {
            *count = r.get(1 + keys.len() + i)?;
        }
        sums.add(label, &key[..keys.len()], counts, || {
            block_sum(which, label, r)
        })?;
    }
    Ok(sums.into_sums())
}

/// `items` as a JSON array, for a `json_each(?)` list parameter.
fn json_list<T: serde::Serialize>(items: &[T]) -> rusqlite::Result<String> {
    serde_json::to_string(items).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Adds up the outcome blocks of each run in SQL; sums clamp at
/// i64::MAX (`total()` is a float past 2^53, far beyond task counts and
/// seconds any workspace reaches).
pub fn outcome_sums(
    conn: &Connection,
    which: Blocks,
    workspace: WorkspaceId,
    runs: &[BlockRun],
) -> rusqlite::Result<Vec<OutcomeSum>> {
    let (table, agent) = match which {
        Blocks::Model => ("task_outcome_block", "NULL"),
        Blocks::Agent => ("task_outcome_agent_block", "agent_id"),
    };
    let sql = format!(
        "SELECT {agent}, status, failure_reason,
                CAST(min(total(task_count), 9223372036854775807) AS INTEGER),
                CAST(min(total(run_count), 9223372036854775807) AS INTEGER),
                CAST(min(total(run_seconds), 9223372036854775807) AS INTEGER)
         FROM {table}
         WHERE workspace_id = ?1 AND span = ?2 AND bucket >= ?3 AND bucket < ?4
         GROUP BY 1, 2, 3"
    );
    let key = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M").to_string();
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut out = Vec::new();
    for run in runs {
        let rows = stmt.query_map(
            params![workspace, run.span, key(&run.from), key(&run.to)],
            |r| {
                let agent: Option<String> = r.get(0)?;
                let agent = agent
                    .map(|a| uuid::Uuid::parse_str(&a))
                    .transpose()
                    .map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            0,
                            rusqlite::types::Type::Text,
                            Box::new(e),
                        )
                    })?;
                Ok(OutcomeSum {
                    label: run.label,
                    agent: agent.and_then(agent_of),
                    status: r.get(1)?,
                    failure_reason: r.get(2)?,
                    task_count: r.get(3)?,
                    run_count: r.get(4)?,
                    run_seconds: r.get(5)?,
                })
            },
        )?;
        for row in rows {
            out.push(row?);
        }
    }
    Ok(out)
}

/// A row of (label, keys, counts) as a [`BlockSum`] of `label`.
fn block_sum(which: Blocks, label: usize, r: &rusqlite::Row<'_>) -> rusqlite::Result<BlockSum> {
    let uuid = |i: usize| -> rusqlite::Result<uuid::Uuid> {
        let text: String = r.get(i)?;
        uuid::Uuid::parse_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    let (runtime, agent, first) = match which {
        Blocks::Model => (None, None, 1),
        Blocks::Agent => (runtime_of(uuid(1)?), agent_of(uuid(2)?), 3),
    };
    let mut counts = [0i64; 10];
    for (i, count) in counts.iter_mut().enumerate() {
        *count = r.get(first + 2 + i)?;
    }
    Ok(BlockSum {
        label,
        runtime,
        agent,
        provider: r.get(first)?,
        model: r.get(first + 1)?,
        counts,
    })
}

/// The values and the `ON CONFLICT` assignments that add the counts of
/// [`QUARTER_COLUMNS`], parameters `?first` on, to a rollup row: a new
/// row takes no negative count, a stored one stays within 0..=i64::MAX.
fn added_counts(first: usize) -> (String, String) {
    let values: Vec<String> = (0..QUARTER_COLUMNS.len())
        .map(|i| format!("max(0, ?{})", first + i))
        .collect();
    let sets: Vec<String> = QUARTER_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{c} = max(0, min({c} + ?{}, 9223372036854775807))",
                first + i
            )
        })
        .collect();
    (values.join(", "), sets.join(", "))
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
    let (values, sets) = added_counts(7);
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
        values,
        sets
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
         FROM runtime_usage_quarter WHERE runtime_id = ?1 AND bucket >= ?2 LIMIT ?3",
        QUARTER_COLUMNS.join(", ")
    ))?;
    let from = from.format("%Y-%m-%dT%H:%M").to_string();
    let limit = MAX_RUNTIME_QUARTERS + 1;
    let rows = stmt.query_map(params![runtime, from, limit], |r| {
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

pub fn runtime_reports(
    conn: &Connection,
    runtime: RuntimeId,
    from: &str,
) -> rusqlite::Result<Vec<RuntimeUsage>> {
    let mut stmt = conn.prepare_cached(
        "SELECT date, provider, model, input_tokens, output_tokens, cache_read_tokens,
                cache_write_tokens
         FROM runtime_usage WHERE runtime_id = ?1 AND date >= ?2",
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
            cost_usd_ticks: None,
            source: UsageSource::RuntimeReport,
        })
    })?;
    rows.collect()
}

/// The zone the workspace's `usage_zone_day` rows are local days of.
pub fn day_zone(conn: &Connection, workspace: WorkspaceId) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT day_zone FROM workspace WHERE id = ?1")?
        .query_row([workspace], |r| r.get(0))
        .optional()
}

/// Moves the workspace's local day that starts at `day` by `counts`
/// ([`QUARTER_COLUMNS`] order) for the entry's provider and model.
pub fn add_to_zone_day(
    conn: &Connection,
    workspace: WorkspaceId,
    day: chrono::DateTime<chrono::Utc>,
    entry: &UsageEntry,
    counts: &[i64; 10],
) -> rusqlite::Result<()> {
    let columns = QUARTER_COLUMNS;
    let (values, sets) = added_counts(5);
    let mut params: Vec<rusqlite::types::Value> = vec![
        workspace.to_string().into(),
        day.format("%Y-%m-%dT%H:%M").to_string().into(),
        entry.provider.clone().into(),
        entry.model.clone().into(),
    ];
    params.extend(counts.iter().map(|c| rusqlite::types::Value::Integer(*c)));
    conn.prepare_cached(&format!(
        "INSERT INTO usage_zone_day (workspace_id, bucket, provider, model, {})
         VALUES (?1, ?2, ?3, ?4, {})
         ON CONFLICT (workspace_id, bucket, provider, model) DO UPDATE SET {}",
        columns.join(", "),
        values,
        sets
    ))?
    .execute(rusqlite::params_from_iter(params))?;
    Ok(())
}

/// Writes the rows of a rebuild (after [`clear_zone_days`]: none is
/// there yet).
pub fn insert_zone_days(
    conn: &Connection,
    workspace: WorkspaceId,
    rows: &[ZoneDay],
) -> rusqlite::Result<()> {
    let columns = QUARTER_COLUMNS;
    let values: Vec<String> = (0..columns.len()).map(|i| format!("?{}", i + 5)).collect();
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT INTO usage_zone_day (workspace_id, bucket, provider, model, {})
         VALUES (?1, ?2, ?3, ?4, {})",
        columns.join(", "),
        values.join(", "),
    ))?;
    for row in rows {
        let mut params: Vec<rusqlite::types::Value> = vec![
            workspace.to_string().into(),
            row.start.format("%Y-%m-%dT%H:%M").to_string().into(),
            row.provider.clone().into(),
            row.model.clone().into(),
        ];
        params.extend(
            row.counts
                .iter()
                .map(|c| rusqlite::types::Value::Integer(*c)),
        );
        stmt.execute(rusqlite::params_from_iter(params))?;
    }
    Ok(())
}

/// Drops the workspace's zone days and records `zone` as theirs.
pub fn clear_zone_days(
    conn: &Connection,
    workspace: WorkspaceId,
    zone: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM usage_zone_day WHERE workspace_id = ?1")?
        .execute([workspace])?;
    conn.prepare_cached("UPDATE workspace SET day_zone = ?2 WHERE id = ?1")?
        .execute(params![workspace, zone])?;
    Ok(())
}

/// The first and the last UTC day the workspace has task usage on.
pub fn usage_days(
    conn: &Connection,
    workspace: WorkspaceId,
) -> rusqlite::Result<Option<(chrono::NaiveDate, chrono::NaiveDate)>> {
    let (first, last): (Option<String>, Option<String>) = conn
        .prepare_cached(
            "SELECT min(bucket), max(bucket) FROM usage_block
             WHERE workspace_id = ?1 AND span = 1440",
        )?
        .query_row([workspace], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let date = |text: String| {
        chrono::NaiveDate::parse_from_str(text.get(..10).unwrap_or(""), "%Y-%m-%d").map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    match (first, last) {
        (Some(first), Some(last)) => Ok(Some((date(first)?, date(last)?))),
        _ => Ok(None),
    }
}

/// The workspaces whose zone days are not days of their time zone, with
/// that zone.
pub fn zones_apart(conn: &Connection) -> rusqlite::Result<Vec<(WorkspaceId, String)>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, timezone FROM workspace WHERE day_zone <> timezone")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}
