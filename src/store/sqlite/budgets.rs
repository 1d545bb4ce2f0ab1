//! Budgets; `scope_id` is hyphenated UUID text.

use chrono::NaiveDate;
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use crate::domain::{
    AgentId, BudgetId, BudgetPeriod, BudgetScope, RuntimeId, TaskId, Timestamp, UserId, WorkspaceId,
};
use crate::store::budgets::{Budget, DayUsage, NewBudget, Periods, SPENT_CAP};

const COLUMNS: &str = "id, workspace_id, scope, scope_id, period, limit_ticks, warn_percent,
     period_start, spent_ticks, warned_for, exceeded_for, blocked_until, created_by,
     created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Budget> {
    let scope_id: Option<String> = r.get(3)?;
    let scope_id = scope_id
        .map(|text| {
            Uuid::try_parse(&text).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    3,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })
        })
        .transpose()?;
    Ok(Budget {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        scope: r.get(2)?,
        scope_id,
        period: r.get(4)?,
        limit_ticks: r.get(5)?,
        warn_percent: r.get(6)?,
        period_start: r.get(7)?,
        spent_ticks: r.get(8)?,
        warned_for: r.get(9)?,
        exceeded_for: r.get(10)?,
        blocked_until: r.get(11)?,
        created_by: r.get(12)?,
        created_at: r.get(13)?,
        updated_at: r.get(14)?,
    })
}

fn text(id: Option<Uuid>) -> Option<String> {
    id.map(|u| u.hyphenated().to_string())
}

pub fn any(conn: &Connection, workspace: WorkspaceId) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM budget WHERE workspace_id = ?1)")?
        .query_row([workspace], |r| r.get(0))
}

pub fn list(conn: &Connection, workspace: WorkspaceId) -> rusqlite::Result<Vec<Budget>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM budget WHERE workspace_id = ?1 ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map([workspace], from_row)?;
    rows.collect()
}

/// One writer: nothing to lock.
pub fn get(
    conn: &Connection,
    workspace: WorkspaceId,
    id: BudgetId,
    _lock: bool,
) -> rusqlite::Result<Option<Budget>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM budget WHERE workspace_id = ?1 AND id = ?2"
    ))?
    .query_row(params![workspace, id], from_row)
    .optional()
}

pub fn count(conn: &Connection, workspace: WorkspaceId) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM budget WHERE workspace_id = ?1")?
        .query_row([workspace], |r| r.get(0))
}

pub fn exists(
    conn: &Connection,
    workspace: WorkspaceId,
    scope: BudgetScope,
    scope_id: Option<Uuid>,
    period: BudgetPeriod,
) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM budget WHERE workspace_id = ?1 AND scope = ?2
             AND coalesce(scope_id, '') = coalesce(?3, '') AND period = ?4)",
    )?
    .query_row(params![workspace, scope, text(scope_id), period], |r| {
        r.get(0)
    })
}

pub fn insert(
    conn: &Connection,
    new: &NewBudget,
    id: BudgetId,
    at: Timestamp,
) -> rusqlite::Result<Budget> {
    conn.prepare_cached(&format!(
        "INSERT INTO budget (id, workspace_id, scope, scope_id, period, limit_ticks,
             warn_percent, period_start, spent_ticks, created_by, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)
         RETURNING {COLUMNS}"
    ))?
    .query_row(
        params![
            id,
            new.workspace,
            new.scope,
            text(new.scope_id),
            new.period,
            new.limit_ticks,
            new.warn_percent,
            new.period_start,
            new.spent_ticks.clamp(0, SPENT_CAP),
            new.created_by,
            at
        ],
        from_row,
    )
}

pub fn update(
    conn: &Connection,
    id: BudgetId,
    limit_ticks: i64,
    warn_percent: i64,
    at: Timestamp,
) -> rusqlite::Result<Option<Budget>> {
    conn.prepare_cached(&format!(
        "UPDATE budget SET limit_ticks = ?2, warn_percent = ?3, updated_at = ?4
         WHERE id = ?1 RETURNING {COLUMNS}"
    ))?
    .query_row(params![id, limit_ticks, warn_percent, at], from_row)
    .optional()
}

pub fn delete(conn: &Connection, workspace: WorkspaceId, id: BudgetId) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached("DELETE FROM budget WHERE workspace_id = ?1 AND id = ?2")?
        .execute(params![workspace, id])?;
    Ok(n > 0)
}

pub fn set_marks(
    conn: &Connection,
    id: BudgetId,
    period_start: Timestamp,
    warned_for: Option<Timestamp>,
    exceeded_for: Option<Timestamp>,
    blocked_until: Option<Timestamp>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE budget SET warned_for = ?2, exceeded_for = ?3, blocked_until = ?4,
             period_start = ?5
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        warned_for,
        exceeded_for,
        blocked_until,
        period_start
    ])?;
    Ok(())
}

/// Adds `ticks` to the counters of the budgets charging a task of `agent`
/// queued by `member`, each in its current period (a counter of an
/// earlier one starts again), kept within 0..=[`SPENT_CAP`].
pub fn charge(
    conn: &Connection,
    workspace: WorkspaceId,
    agent: Option<AgentId>,
    member: Option<UserId>,
    ticks: i64,
    periods: &Periods,
) -> rusqlite::Result<Vec<Budget>> {
    let mut stmt = conn.prepare_cached(&format!(
        "UPDATE budget SET
             spent_ticks = min(?7, max(0,
                 CASE WHEN period_start = (CASE period WHEN 'daily' THEN ?4 ELSE ?5 END)
                      THEN spent_ticks ELSE 0 END + ?6)),
             period_start = CASE period WHEN 'daily' THEN ?4 ELSE ?5 END
         WHERE workspace_id = ?1
           AND (scope = 'workspace'
                OR (scope = 'agent' AND scope_id = ?2)
                OR (scope = 'member' AND scope_id = ?3))
         RETURNING {COLUMNS}"
    ))?;
    let rows = stmt.query_map(
        params![
            workspace,
            agent,
            member,
            periods.day.0,
            periods.month.0,
            ticks,
            SPENT_CAP
        ],
        from_row,
    )?;
    rows.collect()
}

pub fn blocking(
    conn: &Connection,
    workspace: WorkspaceId,
    now: Timestamp,
) -> rusqlite::Result<Vec<Budget>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM budget
         WHERE workspace_id = ?1 AND blocked_until IS NOT NULL AND blocked_until > ?2"
    ))?;
    let rows = stmt.query_map(params![workspace, now], from_row)?;
    rows.collect()
}

pub fn member_usage(
    conn: &Connection,
    workspace: WorkspaceId,
    member: UserId,
    since: Timestamp,
) -> rusqlite::Result<Vec<DayUsage>> {
    // sums as floats, clamped: exact below 2^53, never an overflow error
    let mut stmt = conn.prepare_cached(
        "SELECT substr(u.created_at, 1, 10), u.provider, u.model,
                CAST(min(total(CASE WHEN u.cost_usd_ticks IS NULL THEN u.input_tokens END), 9e18) AS INTEGER),
                CAST(min(total(CASE WHEN u.cost_usd_ticks IS NULL THEN u.output_tokens END), 9e18) AS INTEGER),
                CAST(min(total(CASE WHEN u.cost_usd_ticks IS NULL THEN u.cache_read_tokens END), 9e18) AS INTEGER),
                CAST(min(total(CASE WHEN u.cost_usd_ticks IS NULL THEN u.cache_write_tokens END), 9e18) AS INTEGER),
                CAST(min(total(u.cost_usd_ticks), 9e18) AS INTEGER)
         FROM agent_task_queue t JOIN task_usage u ON u.task_id = t.id
         WHERE t.created_by = ?2 AND t.workspace_id = ?1 AND u.created_at >= ?3
         GROUP BY 1, 2, 3",
    )?;
    let rows = stmt.query_map(params![workspace, member, since], |r| {
        let day: String = r.get(0)?;
        let day = NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?;
        Ok(DayUsage {
            day,
            provider: r.get(1)?,
            model: r.get(2)?,
            uncosted: [r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?],
            reported_ticks: r.get(7)?,
        })
    })?;
    rows.collect()
}

pub fn queued_runtimes(
    conn: &Connection,
    workspace: WorkspaceId,
    limit: i64,
) -> rusqlite::Result<Vec<(RuntimeId, TaskId)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT runtime_id, task FROM (
             SELECT a.runtime_id,
                    (SELECT q.id FROM agent_task_queue q
                     WHERE q.agent_id = a.id AND q.status = 'queued' LIMIT 1) AS task
             FROM agent a WHERE a.workspace_id = ?1 AND a.archived_at IS NULL)
         WHERE task IS NOT NULL GROUP BY runtime_id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![workspace, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// One writer: a charge's rows are the writer's already.
pub fn lock_charged(
    _conn: &Connection,
    _workspace: WorkspaceId,
    _agent: Option<AgentId>,
    _member: Option<UserId>,
) -> rusqlite::Result<()> {
    Ok(())
}

/// One writer: every write holds the whole database.
pub fn hold(_conn: &Connection, _workspace: WorkspaceId, _exclusive: bool) -> rusqlite::Result<()> {
    Ok(())
}

pub fn restart(
    conn: &Connection,
    id: BudgetId,
    start: Timestamp,
    spent: i64,
) -> rusqlite::Result<Option<Budget>> {
    conn.prepare_cached(&format!(
        "UPDATE budget SET period_start = ?2, spent_ticks = ?3 WHERE id = ?1 RETURNING {COLUMNS}"
    ))?
    .query_row(params![id, start, spent], from_row)
    .optional()
}
