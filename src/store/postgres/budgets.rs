//! Budgets.

use chrono::NaiveDate;
use postgres::Row;
use uuid::Uuid;

use super::Client;

use crate::domain::{
    AgentId, BudgetId, BudgetPeriod, BudgetScope, RuntimeId, TaskId, Timestamp, UserId, WorkspaceId,
};
use crate::store::budgets::{Budget, DayUsage, NewBudget, Periods, SPENT_CAP};

const COLUMNS: &str = "id, workspace_id, scope, scope_id, period, limit_ticks, warn_percent,
     period_start, spent_ticks, warned_for, exceeded_for, blocked_until, created_by,
     created_at, updated_at";

fn from_row(r: &Row) -> Result<Budget, postgres::Error> {
    Ok(Budget {
        id: r.try_get(0)?,
        workspace_id: r.try_get(1)?,
        scope: r.try_get(2)?,
        scope_id: r.try_get(3)?,
        period: r.try_get(4)?,
        limit_ticks: r.try_get(5)?,
        warn_percent: r.try_get(6)?,
        period_start: r.try_get(7)?,
        spent_ticks: r.try_get(8)?,
        warned_for: r.try_get(9)?,
        exceeded_for: r.try_get(10)?,
        blocked_until: r.try_get(11)?,
        created_by: r.try_get(12)?,
        created_at: r.try_get(13)?,
        updated_at: r.try_get(14)?,
    })
}

pub fn any(conn: &mut Client, workspace: WorkspaceId) -> Result<bool, postgres::Error> {
    conn.query_one(
        "SELECT EXISTS (SELECT 1 FROM budget WHERE workspace_id = $1)",
        &[&workspace],
    )?
    .try_get(0)
}

pub fn list(conn: &mut Client, workspace: WorkspaceId) -> Result<Vec<Budget>, postgres::Error> {
    conn.query(
        &format!("SELECT {COLUMNS} FROM budget WHERE workspace_id = $1 ORDER BY created_at, id"),
        &[&workspace],
    )?
    .iter()
    .map(from_row)
    .collect()
}

pub fn get(
    conn: &mut Client,
    workspace: WorkspaceId,
    id: BudgetId,
    lock: bool,
) -> Result<Option<Budget>, postgres::Error> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM budget WHERE workspace_id = $1 AND id = $2{lock}"),
        &[&workspace, &id],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub fn count(conn: &mut Client, workspace: WorkspaceId) -> Result<i64, postgres::Error> {
    conn.query_one(
        "SELECT count(*) FROM budget WHERE workspace_id = $1",
        &[&workspace],
    )?
    .try_get(0)
}

pub fn exists(
    conn: &mut Client,
    workspace: WorkspaceId,
    scope: BudgetScope,
    scope_id: Option<Uuid>,
    period: BudgetPeriod,
) -> Result<bool, postgres::Error> {
    conn.query_one(
        "SELECT EXISTS (SELECT 1 FROM budget WHERE workspace_id = $1 AND scope = $2
             AND scope_id IS NOT DISTINCT FROM $3 AND period = $4)",
        &[&workspace, &scope, &scope_id, &period],
    )?
    .try_get(0)
}

pub fn insert(
    conn: &mut Client,
    new: &NewBudget,
    id: BudgetId,
    at: Timestamp,
) -> Result<Budget, postgres::Error> {
    let row = conn.query_one(
        &format!(
            "INSERT INTO budget (id, workspace_id, scope, scope_id, period, limit_ticks,
                 warn_percent, period_start, spent_ticks, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
             RETURNING {COLUMNS}"
        ),
        &[
            &id,
            &new.workspace,
            &new.scope,
            &new.scope_id,
            &new.period,
            &new.limit_ticks,
            &new.warn_percent,
            &new.period_start,
            &new.spent_ticks.clamp(0, SPENT_CAP),
            &new.created_by,
            &at,
        ],
    )?;
    from_row(&row)
}

pub fn update(
    conn: &mut Client,
    id: BudgetId,
    limit_ticks: i64,
    warn_percent: i64,
    at: Timestamp,
) -> Result<Option<Budget>, postgres::Error> {
    conn.query_opt(
        &format!(
            "UPDATE budget SET limit_ticks = $2, warn_percent = $3, updated_at = $4
             WHERE id = $1 RETURNING {COLUMNS}"
        ),
        &[&id, &limit_ticks, &warn_percent, &at],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub fn delete(
    conn: &mut Client,
    workspace: WorkspaceId,
    id: BudgetId,
) -> Result<bool, postgres::Error> {
    let n = conn.execute(
        "DELETE FROM budget WHERE workspace_id = $1 AND id = $2",
        &[&workspace, &id],
    )?;
    Ok(n > 0)
}

pub fn set_marks(
    conn: &mut Client,
    id: BudgetId,
    period_start: Timestamp,
    warned_for: Option<Timestamp>,
    exceeded_for: Option<Timestamp>,
    blocked_until: Option<Timestamp>,
) -> Result<(), postgres::Error> {
    conn.execute(
        "UPDATE budget SET warned_for = $2, exceeded_for = $3, blocked_until = $4,
             period_start = $5
         WHERE id = $1",
        &[
            &id,
            &warned_for,
            &exceeded_for,
            &blocked_until,
            &period_start,
        ],
    )?;
    Ok(())
}

/// As SQLite's. The rows were locked by [`lock_charged`] first, in id
/// order, so concurrent charges of one budget add up and charges of
/// overlapping sets of budgets (the workspace's and each one's agent)
/// never wait on each other in a cycle.
pub fn charge(
    conn: &mut Client,
    workspace: WorkspaceId,
    agent: Option<AgentId>,
    member: Option<UserId>,
    ticks: i64,
    periods: &Periods,
) -> Result<Vec<Budget>, postgres::Error> {
    conn.query(
        &format!(
            "UPDATE budget SET
                 spent_ticks = LEAST($7::bigint, GREATEST(0,
                     CASE WHEN period_start = (CASE period WHEN 'daily' THEN $4::timestamptz
                                                           ELSE $5::timestamptz END)
                          THEN spent_ticks ELSE 0 END + $6::bigint)),
                 period_start = CASE period WHEN 'daily' THEN $4::timestamptz
                                            ELSE $5::timestamptz END
             WHERE workspace_id = $1
               AND (scope = 'workspace'
                    OR (scope = 'agent' AND scope_id = $2)
                    OR (scope = 'member' AND scope_id = $3))
             RETURNING {COLUMNS}"
        ),
        &[
            &workspace,
            &agent,
            &member,
            &periods.day.0,
            &periods.month.0,
            &ticks,
            &SPENT_CAP,
        ],
    )?
    .iter()
    .map(from_row)
    .collect()
}

pub fn blocking(
    conn: &mut Client,
    workspace: WorkspaceId,
    now: Timestamp,
) -> Result<Vec<Budget>, postgres::Error> {
    conn.query(
        &format!(
            "SELECT {COLUMNS} FROM budget
             WHERE workspace_id = $1 AND blocked_until IS NOT NULL AND blocked_until > $2"
        ),
        &[&workspace, &now],
    )?
    .iter()
    .map(from_row)
    .collect()
}

pub fn member_usage(
    conn: &mut Client,
    workspace: WorkspaceId,
    member: UserId,
    since: Timestamp,
) -> Result<Vec<DayUsage>, postgres::Error> {
    // numeric sums, clamped to bigint
    let sum = |column: &str| {
        format!(
            "LEAST(coalesce(sum({column}) FILTER (WHERE u.cost_usd_ticks IS NULL), 0),
                   9000000000000000000)::bigint"
        )
    };
    let sql = format!(
        "SELECT (u.created_at AT TIME ZONE 'UTC')::date, u.provider, u.model,
                {}, {}, {}, {},
                LEAST(coalesce(sum(u.cost_usd_ticks), 0), 9000000000000000000)::bigint
         FROM agent_task_queue t JOIN task_usage u ON u.task_id = t.id
         WHERE t.created_by = $2 AND t.workspace_id = $1 AND u.created_at >= $3
         GROUP BY 1, 2, 3",
        sum("u.input_tokens"),
        sum("u.output_tokens"),
        sum("u.cache_read_tokens"),
        sum("u.cache_write_tokens"),
    );
    conn.query(&sql, &[&workspace, &member, &since])?
        .iter()
        .map(|r| {
            let day: NaiveDate = r.try_get(0)?;
            Ok(DayUsage {
                day,
                provider: r.try_get(1)?,
                model: r.try_get(2)?,
                uncosted: [r.try_get(3)?, r.try_get(4)?, r.try_get(5)?, r.try_get(6)?],
                reported_ticks: r.try_get(7)?,
            })
        })
        .collect()
}

pub fn queued_runtimes(
    conn: &mut Client,
    workspace: WorkspaceId,
    limit: i64,
) -> Result<Vec<(RuntimeId, TaskId)>, postgres::Error> {
    conn.query(
        "SELECT DISTINCT ON (a.runtime_id) a.runtime_id, q.id
         FROM agent a
         CROSS JOIN LATERAL (SELECT q.id FROM agent_task_queue q
                             WHERE q.agent_id = a.id AND q.status = 'queued' LIMIT 1) q
         WHERE a.workspace_id = $1 AND a.archived_at IS NULL
         ORDER BY a.runtime_id
         LIMIT $2",
        &[&workspace, &limit],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

pub fn lock_charged(
    conn: &mut Client,
    workspace: WorkspaceId,
    agent: Option<AgentId>,
    member: Option<UserId>,
) -> Result<(), postgres::Error> {
    conn.execute(
        "SELECT id FROM budget
         WHERE workspace_id = $1
           AND (scope = 'workspace'
                OR (scope = 'agent' AND scope_id = $2)
                OR (scope = 'member' AND scope_id = $3))
         ORDER BY id
         FOR UPDATE",
        &[&workspace, &agent, &member],
    )?;
    Ok(())
}

/// The advisory lock of the workspace's budgets: `budg` and 32 bits of
/// the workspace id (two workspaces that share them only wait for each
/// other, they never mix).
pub fn hold(
    conn: &mut Client,
    workspace: WorkspaceId,
    exclusive: bool,
) -> Result<(), postgres::Error> {
    let bytes = crate::domain::EntityId::uuid(workspace).into_bytes();
    let key = bytes
        .chunks(4)
        .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .fold(0i32, |a, b| a ^ b);
    let sql = if exclusive {
        "SELECT pg_advisory_xact_lock($1, $2)"
    } else {
        "SELECT pg_advisory_xact_lock_shared($1, $2)"
    };
    conn.execute(sql, &[&0x6275_6467_i32, &key])?;
    Ok(())
}

pub fn restart(
    conn: &mut Client,
    id: BudgetId,
    start: Timestamp,
    spent: i64,
) -> Result<Option<Budget>, postgres::Error> {
    conn.query_opt(
        &format!(
            "UPDATE budget SET period_start = $2, spent_ticks = $3 WHERE id = $1
             RETURNING {COLUMNS}"
        ),
        &[&id, &start, &spent],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}
