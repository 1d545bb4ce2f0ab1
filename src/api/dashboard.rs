//! The workspace dashboard: usage and cost per day, per agent and per
//! runtime, run time per agent and task outcomes per day, over the last
//! N local days (`?days=N&tz=Zone`, default 30; see [`LocalDays`]).
//! Paths and row fields are Multica's where it has the page.
//!
//! Members of the workspace only. Agents a member may not see (private
//! agents of others, for members who are not owners or admins) are folded
//! into one row whose `agent_id` is `"private"`.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use chrono::NaiveDate;
use serde::Serialize;
use serde_json::{json, Value};

use super::usage::{
    costed_blocks, stretches, AgentNames, ByKey, CostedCounts, Keyed, LocalDays, Sums, WindowQuery,
};
use crate::auth::WorkspaceAccess;
use crate::error::ApiError;
use crate::pricing::PriceBook;
use crate::store::usage::{self, Blocks};
use crate::store::Store;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/dashboard/usage/daily", web::get().to(usage_daily))
        .route("/dashboard/usage/by-agent", web::get().to(usage_by_agent))
        .route(
            "/dashboard/usage/by-runtime",
            web::get().to(usage_by_runtime),
        )
        .route("/dashboard/agent-runtime", web::get().to(agent_run_time))
        .route("/dashboard/failures/daily", web::get().to(failures_daily));
}

/// The workspace's priced usage blocks over the query's window, and how
/// to name their agents to the caller.
async fn priced(
    db: &Store,
    access: WorkspaceAccess,
    which: Blocks,
    query: &WindowQuery,
    per_day: bool,
) -> Result<(Vec<super::usage::CostedSum>, AgentNames), ApiError> {
    let days = LocalDays::of(query, 30)?;
    db.read(move |conn| -> Result<_, ApiError> {
        let prices = PriceBook::new(crate::store::pricing::overrides(conn, access.workspace_id)?);
        let rows = costed_blocks(conn, which, access.workspace_id, &days, per_day, &prices)?;
        let names = AgentNames::load(conn, access.workspace_id, access.user_id, access.role)?;
        Ok((rows, names))
    })
    .await
}

#[derive(Serialize)]
struct UsageDailyRow {
    date: String,
    provider: String,
    model: String,
    #[serde(flatten)]
    counts: CostedCounts,
}

/// `GET /api/dashboard/usage/daily`: per local date, provider and model,
/// newest date first.
async fn usage_daily(
    db: web::Data<Store>,
    access: WorkspaceAccess,
    query: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, _) = priced(&db, access, Blocks::Model, &query, true).await?;
    let mut grouped: BTreeMap<(NaiveDate, String, String), Sums> = BTreeMap::new();
    for row in rows {
        let Some(date) = row.date else { continue };
        grouped
            .entry((date, row.sum.provider, row.sum.model))
            .or_default()
            .merge(&row.costed);
    }
    let mut out: Vec<UsageDailyRow> = grouped
        .into_iter()
        .map(|((date, provider, model), sums)| UsageDailyRow {
            date: date.format("%Y-%m-%d").to_string(),
            provider,
            model,
            counts: sums.costed(),
        })
        .collect();
    out.sort_by(|a, b| b.date.cmp(&a.date));
    Ok(HttpResponse::Ok().json(out))
}

/// `GET /api/dashboard/usage/by-agent`: per agent, provider and model,
/// costliest first.
async fn usage_by_agent(
    db: web::Data<Store>,
    access: WorkspaceAccess,
    query: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, names) = priced(&db, access, Blocks::Agent, &query, false).await?;
    let mut grouped = ByKey::default();
    for row in rows {
        grouped
            .at(
                names.value(row.sum.agent),
                &row.sum.provider,
                &row.sum.model,
            )
            .merge(&row.costed);
    }
    Ok(HttpResponse::Ok().json(grouped.rows(Keyed::Agent)))
}

/// `GET /api/dashboard/usage/by-runtime`: per runtime, provider and model,
/// costliest first. Runtimes are visible to every member.
async fn usage_by_runtime(
    db: web::Data<Store>,
    access: WorkspaceAccess,
    query: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, _) = priced(&db, access, Blocks::Agent, &query, false).await?;
    let mut grouped = ByKey::default();
    for row in rows {
        let runtime = row.sum.runtime.map_or(Value::Null, |r| json!(r));
        grouped
            .at(runtime, &row.sum.provider, &row.sum.model)
            .merge(&row.costed);
    }
    Ok(HttpResponse::Ok().json(grouped.rows(Keyed::Runtime)))
}

/// How the workspace's tasks ended over the query's window, per label of
/// [`stretches`] (`per_day`), and how to name their agents to the caller.
async fn outcomes(
    db: &Store,
    access: WorkspaceAccess,
    which: Blocks,
    query: &WindowQuery,
    per_day: bool,
) -> Result<(Vec<(Option<NaiveDate>, usage::OutcomeSum)>, AgentNames), ApiError> {
    let days = LocalDays::of(query, 30)?;
    db.read(move |conn| -> Result<_, ApiError> {
        let (runs, bounds) = stretches(which, &days, per_day, &[], false);
        let rows = usage::outcome_sums(conn, which, access.workspace_id, &runs)?;
        let names = AgentNames::load(conn, access.workspace_id, access.user_id, access.role)?;
        let dated = rows
            .into_iter()
            .filter_map(|row| {
                let from = *bounds.get(row.label)?;
                Some((per_day.then(|| days.date_of(from)), row))
            })
            .collect();
        Ok((dated, names))
    })
    .await
}

#[derive(Serialize, Default)]
struct AgentRunTimeRow {
    agent_id: Value,
    total_seconds: i64,
    task_count: i64,
    failed_count: i64,
    cancelled_count: i64,
}

/// `GET /api/dashboard/agent-runtime`: per agent, the tasks that started
/// and then completed, failed or were cancelled in the window (by when
/// they ended), with their run time; longest first.
async fn agent_run_time(
    db: web::Data<Store>,
    access: WorkspaceAccess,
    query: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, names) = outcomes(&db, access, Blocks::Agent, &query, false).await?;
    let mut grouped: BTreeMap<String, AgentRunTimeRow> = BTreeMap::new();
    for (_, row) in rows {
        let agent = names.value(row.agent);
        let entry = grouped
            .entry(agent.to_string())
            .or_insert_with(|| AgentRunTimeRow {
                agent_id: agent,
                ..Default::default()
            });
        let add = |a: &mut i64, b: i64| *a = a.saturating_add(b);
        add(&mut entry.total_seconds, row.run_seconds);
        add(&mut entry.task_count, row.run_count);
        match row.status.as_str() {
            "failed" => add(&mut entry.failed_count, row.run_count),
            "cancelled" => add(&mut entry.cancelled_count, row.run_count),
            _ => {}
        }
    }
    let mut out: Vec<AgentRunTimeRow> =
        grouped.into_values().filter(|r| r.task_count > 0).collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.total_seconds));
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Serialize)]
struct FailureDailyRow {
    date: String,
    /// '' for the tasks that completed (the denominator of an error
    /// rate); else why they failed ('unclassified' when nothing said).
    failure_reason: String,
    task_count: i64,
}

/// `GET /api/dashboard/failures/daily`: per local date (of when they
/// ended), the tasks that completed and those that failed, by
/// `failure_reason`; newest date first.
async fn failures_daily(
    db: web::Data<Store>,
    access: WorkspaceAccess,
    query: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, _) = outcomes(&db, access, Blocks::Model, &query, true).await?;
    let mut grouped: BTreeMap<(std::cmp::Reverse<NaiveDate>, String), i64> = BTreeMap::new();
    for (date, row) in rows {
        let Some(date) = date else { continue };
        if row.status == "cancelled" {
            continue;
        }
        let count = grouped
            .entry((std::cmp::Reverse(date), row.failure_reason))
            .or_default();
        *count = count.saturating_add(row.task_count);
    }
    let out: Vec<FailureDailyRow> = grouped
        .into_iter()
        .map(|((date, failure_reason), task_count)| FailureDailyRow {
            date: date.0.format("%Y-%m-%d").to_string(),
            failure_reason,
            task_count,
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}
