//! Budgets that act (`/api/budgets`): spending limits per day or month of
//! the workspace's time zone, on the whole workspace, one agent, or the
//! tasks one member queued. See [`crate::store::budgets`] for how spend
//! is counted and claims are held back.
//!
//! - `GET /api/budgets` (members): every budget with `spent_usd`,
//!   `remaining_usd` and its current period.
//! - `POST /api/budgets` (owners/admins): `{scope, scope_id, period,
//!   limit_usd, warn_percent?}` → 201 with the budget. It starts from what
//!   the usage pages show for the current period (usage first recorded in
//!   it, priced as those pages price it); from then on every usage report
//!   charges the period it arrives in.
//! - `PUT /api/budgets/{id}` (owners/admins): `{limit_usd?,
//!   warn_percent?}`; a limit raised past the spend releases the tasks it
//!   held back at once.
//! - `DELETE /api/budgets/{id}` (owners/admins).
//!
//! Crossing `warn_percent` publishes `budget:warning`, reaching the limit
//! `budget:exceeded`, each once per period, to every member, with the
//! budget as the payload.

use std::collections::hash_map::{Entry, HashMap};

use actix_web::{web, HttpResponse};
use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::access::member_role;
use crate::auth::WorkspaceAccess;
use crate::daemon_hub::DaemonHub;
use crate::domain::{
    AgentId, BudgetId, BudgetPeriod, BudgetScope, EntityId, Timestamp, UserId, WorkspaceId,
};
use crate::error::ApiError;
use crate::events::{Audience, EventBus};
use crate::pricing::{self, PriceBook, Tokens};
use crate::store::budgets::{
    self, Budget, NewBudget, Periods, Settled, MAX_BUDGETS, MAX_LIMIT_TICKS,
};
use crate::store::usage::{Blocks, UsageChange, UsageEntry};
use crate::store::{agents, workspaces, Conn, Store};

use super::usage::{costed_blocks, local_midnight, CostedSum, LocalDays, Sums};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/budgets", web::get().to(list))
        .route("/budgets", web::post().to(create))
        .route("/budgets/{id}", web::put().to(update))
        .route("/budgets/{id}", web::delete().to(delete));
}

/// The warning threshold of a budget created without one.
pub const DEFAULT_WARN_PERCENT: i64 = 80;

/// A budget as the API shows it.
#[derive(Serialize)]
pub struct BudgetJson {
    id: BudgetId,
    workspace_id: WorkspaceId,
    scope: BudgetScope,
    scope_id: Option<Uuid>,
    period: BudgetPeriod,
    limit_usd: f64,
    warn_percent: i64,
    /// Spent in the current period.
    spent_usd: f64,
    /// What is left of the limit (0 once reached).
    remaining_usd: f64,
    /// The current period, in the workspace's zone.
    period_start: Timestamp,
    period_end: Timestamp,
    /// Whether claims hold back the tasks it charges now.
    blocked: bool,
    blocked_until: Option<Timestamp>,
    created_by: Option<UserId>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl BudgetJson {
    pub fn of(budget: &Budget, periods: &Periods, now: Timestamp) -> BudgetJson {
        let (start, end) = periods.of(budget.period);
        let spent = budget.spent_in(start);
        let blocked_until = budget.blocked_until.filter(|until| *until > now);
        BudgetJson {
            id: budget.id,
            workspace_id: budget.workspace_id,
            scope: budget.scope,
            scope_id: budget.scope_id,
            period: budget.period,
            limit_usd: pricing::ticks_usd(budget.limit_ticks),
            warn_percent: budget.warn_percent,
            spent_usd: pricing::ticks_usd(spent),
            remaining_usd: pricing::ticks_usd((budget.limit_ticks - spent).max(0)),
            period_start: start,
            period_end: end,
            blocked: blocked_until.is_some(),
            blocked_until,
            created_by: budget.created_by,
            created_at: budget.created_at,
            updated_at: budget.updated_at,
        }
    }
}

/// The zone a workspace's periods are in (`None`: UTC); a stored name this
/// build does not know counts as UTC.
fn zone_of(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<Option<Tz>, ApiError> {
    let name = workspaces::get(conn, workspace)?
        .map(|w| w.timezone)
        .unwrap_or_default();
    Ok(super::usage::zone(Some(&name)).unwrap_or(None))
}

fn midnight(zone: Option<Tz>, date: NaiveDate) -> Timestamp {
    Timestamp::from_utc(match zone {
        Some(tz) => local_midnight(tz, date),
        None => date.and_time(chrono::NaiveTime::MIN).and_utc(),
    })
}

/// The current day and month of `zone` at `now`.
fn periods_at(zone: Option<Tz>, now: Timestamp) -> Periods {
    let today = match zone {
        Some(tz) => now.utc().with_timezone(&tz).date_naive(),
        None => now.utc().date_naive(),
    };
    let first = today.with_day(1).unwrap_or(today);
    let next_month = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first);
    Periods {
        day: (
            midnight(zone, today),
            midnight(zone, today + chrono::Days::new(1)),
        ),
        month: (midnight(zone, first), midnight(zone, next_month)),
    }
}

/// The workspace's current periods.
pub fn periods_of(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<Periods, ApiError> {
    Ok(periods_at(zone_of(conn, workspace)?, Timestamp::now()))
}

/// Who may see a budget and its events: an agent's budget goes where the
/// agent's events go (a private agent's: its owner and the managers; a
/// deleted agent's: the managers); the others to every member.
fn audience_of(conn: &Conn<'_>, budget: &Budget) -> Result<Audience, ApiError> {
    Ok(match (budget.scope, budget.scope_id) {
        (BudgetScope::Agent, Some(id)) => agents::get(conn, AgentId::from_uuid(id))?
            .as_ref()
            .map_or(Audience::MANAGERS, Audience::of_agent),
        _ => Audience::Workspace,
    })
}

/// `GET /api/budgets` (members): oldest first; the budgets of agents the
/// caller may not see are left out.
async fn list(db: web::Data<Store>, access: WorkspaceAccess) -> Result<HttpResponse, ApiError> {
    let (rows, periods) = db
        .read(move |conn| -> Result<_, ApiError> {
            let mut rows = Vec::new();
            for budget in budgets::list(conn, access.workspace_id)? {
                if audience_of(conn, &budget)?.may_read(access.user_id, access.role) {
                    rows.push(budget);
                }
            }
            Ok((rows, periods_of(conn, access.workspace_id)?))
        })
        .await?;
    let now = Timestamp::now();
    Ok(HttpResponse::Ok().json(
        rows.iter()
            .map(|b| BudgetJson::of(b, &periods, now))
            .collect::<Vec<_>>(),
    ))
}

fn not_a_budget_manager() -> ApiError {
    ApiError::forbidden("only workspace owners and admins can set budgets")
}

/// The role as of this transaction: owners/admins only.
fn require_budget_manager(tx: &Conn<'_>, access: &WorkspaceAccess) -> Result<(), ApiError> {
    if member_role(tx, access.workspace_id, access.user_id)?.is_manager() {
        Ok(())
    } else {
        Err(not_a_budget_manager())
    }
}

/// `limit_usd`: a number of USD above 0, at most 100,000,000, with at
/// most 6 decimals; in ticks.
fn limit_field(value: Option<&Value>) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "limit_usd must be a number of USD above 0 and at most 100000000, with at most 6 decimals",
        )
    };
    let (usd, text) = match value {
        None | Some(Value::Null) => return Err(ApiError::bad_request("limit_usd is required")),
        Some(Value::Number(n)) => (n.as_f64().ok_or_else(bad)?, n.to_string()),
        Some(_) => return Err(bad()),
    };
    if !usd.is_finite() || usd <= 0.0 || usd > 1e8 {
        return Err(bad());
    }
    let micro = (usd * 1e6).round();
    // the decimals as written; a number in exponent form is checked on
    // its value (a thousandth of a micro-USD covers its representation)
    let decimals_ok = match text.split_once('.') {
        _ if text.contains(['e', 'E']) => (usd * 1e6 - micro).abs() < 1e-3,
        Some((_, fraction)) => fraction.len() <= 6,
        None => true,
    };
    if !decimals_ok || micro < 1.0 {
        return Err(bad());
    }
    let ticks = (micro as i64).saturating_mul(10_000);
    if ticks > MAX_LIMIT_TICKS {
        return Err(bad());
    }
    Ok(ticks)
}

/// `warn_percent`: a whole number from 1 to 100.
fn warn_field(value: Option<&Value>, default: Option<i64>) -> Result<i64, ApiError> {
    match value {
        None | Some(Value::Null) => {
            default.ok_or_else(|| ApiError::bad_request("warn_percent is required"))
        }
        Some(v) => v.as_i64().filter(|p| (1..=100).contains(p)).ok_or_else(|| {
            ApiError::bad_request("warn_percent must be a whole number from 1 to 100")
        }),
    }
}

fn word<T: std::str::FromStr<Err = String>>(
    value: Option<&Value>,
    field: &str,
) -> Result<T, ApiError> {
    match value {
        None | Some(Value::Null) => Err(ApiError::bad_request(format!("{field} is required"))),
        Some(Value::String(s)) => s.trim().parse().map_err(ApiError::BadRequest),
        Some(_) => Err(ApiError::bad_request(format!("{field} must be a string"))),
    }
}

/// Refuses fields a route does not read.
fn only(body: &Value, fields: &[&str]) -> Result<(), ApiError> {
    let object = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    match object.keys().find(|k| !fields.contains(&k.as_str())) {
        Some(other) => Err(ApiError::bad_request(format!(
            "{other} is not a budget field ({})",
            fields.join(", ")
        ))),
        None => Ok(()),
    }
}

struct CreateRequest {
    scope: BudgetScope,
    scope_id: Option<Uuid>,
    period: BudgetPeriod,
    limit_ticks: i64,
    warn_percent: i64,
}

fn parse_create(body: &Value) -> Result<CreateRequest, ApiError> {
    only(
        body,
        &["scope", "scope_id", "period", "limit_usd", "warn_percent"],
    )?;
    let scope: BudgetScope = word(body.get("scope"), "scope")?;
    let scope_id = match (scope, body.get("scope_id")) {
        (BudgetScope::Workspace, None | Some(Value::Null)) => None,
        (BudgetScope::Workspace, Some(_)) => {
            return Err(ApiError::bad_request(
                "scope_id must be null for a workspace budget",
            ))
        }
        (_, None | Some(Value::Null)) => {
            return Err(ApiError::bad_request(format!(
                "scope_id is required for a{} {scope} budget",
                if scope == BudgetScope::Agent { "n" } else { "" }
            )))
        }
        (_, Some(Value::String(s))) => Some(
            crate::domain::parse_uuid(s.trim())
                .map_err(|e| ApiError::bad_request(format!("scope_id: {e}")))?,
        ),
        (_, Some(_)) => return Err(ApiError::bad_request("scope_id must be a UUID string")),
    };
    Ok(CreateRequest {
        scope,
        scope_id,
        period: word(body.get("period"), "period")?,
        limit_ticks: limit_field(body.get("limit_usd"))?,
        warn_percent: warn_field(body.get("warn_percent"), Some(DEFAULT_WARN_PERCENT))?,
    })
}

/// Counts what budgets spent in their current period from the stored
/// usage: the usage first recorded in it of the tasks a budget charges,
/// priced as the usage pages price it. The workspace's zone and prices
/// are read once, and so are the block sums of each period, however many
/// budgets are counted (all of them when the zone changes).
struct Counter {
    workspace: WorkspaceId,
    zone: Option<Tz>,
    prices: PriceBook,
    read: HashMap<(Blocks, Timestamp), Vec<CostedSum>>,
}

impl Counter {
    fn new(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<Counter, ApiError> {
        Ok(Counter {
            workspace,
            zone: zone_of(conn, workspace)?,
            prices: PriceBook::new(crate::store::pricing::overrides(conn, workspace)?),
            read: HashMap::new(),
        })
    }

    /// `which`'s priced block sums of the workspace from `start` on.
    fn blocks(
        &mut self,
        conn: &Conn<'_>,
        which: Blocks,
        start: Timestamp,
    ) -> Result<&[CostedSum], ApiError> {
        let sums = match self.read.entry((which, start)) {
            Entry::Occupied(read) => read.into_mut(),
            Entry::Vacant(unread) => {
                let local = |t: Timestamp| match self.zone {
                    Some(tz) => t.utc().with_timezone(&tz).date_naive(),
                    None => t.utc().date_naive(),
                };
                let days = LocalDays {
                    zone: self.zone,
                    first: local(start),
                    last: local(Timestamp::now()),
                };
                unread.insert(costed_blocks(
                    conn,
                    which,
                    self.workspace,
                    &days,
                    false,
                    &self.prices,
                )?)
            }
        };
        Ok(sums)
    }

    /// What the budget of `scope` spent since `start`.
    fn spent(
        &mut self,
        conn: &Conn<'_>,
        (scope, scope_id): (BudgetScope, Option<Uuid>),
        start: Timestamp,
    ) -> Result<i64, ApiError> {
        let mut sums = Sums::default();
        match (scope, scope_id) {
            (BudgetScope::Workspace, _) => {
                for row in self.blocks(conn, Blocks::Model, start)? {
                    sums.merge(&row.costed);
                }
            }
            (BudgetScope::Agent, agent) => {
                for row in self.blocks(conn, Blocks::Agent, start)? {
                    if row.sum.agent.map(EntityId::uuid) == agent {
                        sums.merge(&row.costed);
                    }
                }
            }
            (BudgetScope::Member, None) => {}
            (BudgetScope::Member, Some(member)) => {
                let member = UserId::from_uuid(member);
                for day in budgets::member_usage(conn, self.workspace, member, start)? {
                    // the layout of QUARTER_COLUMNS: what was reported,
                    // and the tokens of the rows without a reported cost
                    let [input, output, cache_read, cache_write] = day.uncosted;
                    let counts = [
                        0,
                        0,
                        0,
                        0,
                        day.reported_ticks,
                        input,
                        output,
                        cache_read,
                        cache_write,
                        0,
                    ];
                    sums.add(&self.prices, &day.provider, &day.model, day.day, &counts);
                }
            }
        }
        Ok(sums.ticks())
    }
}

/// That the budget's agent or member is in the workspace (404 otherwise).
fn require_scope(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    request: &CreateRequest,
) -> Result<(), ApiError> {
    let found = match (request.scope, request.scope_id) {
        (BudgetScope::Agent, Some(id)) => agents::get(conn, AgentId::from_uuid(id))?
            .is_some_and(|a| a.workspace_id == workspace)
            .then_some(())
            .ok_or_else(|| ApiError::not_found("agent not found")),
        (BudgetScope::Member, Some(id)) => {
            workspaces::role_of(conn, workspace, UserId::from_uuid(id))?
                .map(|_| ())
                .ok_or_else(|| {
                    ApiError::not_found("member not found (scope_id is the member's user id)")
                })
        }
        _ => Ok(()),
    };
    found?;
    Ok(())
}

/// What a change of budgets has to tell once it has committed: the
/// crossings of each settled budget (to those who may see it), and a
/// wake-up for the runtimes with queued work if one stopped blocking.
pub struct Announcement {
    workspace: WorkspaceId,
    settled: Vec<Settled>,
    audiences: Vec<Audience>,
    periods: Periods,
    wake: Vec<(crate::domain::RuntimeId, crate::domain::TaskId)>,
}

impl Announcement {
    /// Read inside the transaction that settled the budgets.
    pub fn of(
        conn: &Conn<'_>,
        workspace: WorkspaceId,
        settled: Vec<Settled>,
        periods: Periods,
    ) -> Result<Announcement, ApiError> {
        let audiences = settled
            .iter()
            .map(|s| audience_of(conn, &s.budget))
            .collect::<Result<_, _>>()?;
        let wake = if settled.iter().any(|s| s.released) {
            budgets::queued_runtimes(conn, workspace)?
        } else {
            Vec::new()
        };
        Ok(Announcement {
            workspace,
            settled,
            audiences,
            periods,
            wake,
        })
    }

    /// The first settled budget as the API shows it.
    fn reply(&self) -> Result<BudgetJson, ApiError> {
        self.settled
            .first()
            .map(|s| BudgetJson::of(&s.budget, &self.periods, Timestamp::now()))
            .ok_or_else(|| ApiError::internal("a settled budget vanished"))
    }

    pub fn publish(self, events: &EventBus, hub: &DaemonHub) {
        let now = Timestamp::now();
        for (s, audience) in self.settled.iter().zip(&self.audiences) {
            for crossing in &s.crossed {
                events.publish_to(
                    crossing.event(),
                    self.workspace,
                    *audience,
                    serde_json::json!(BudgetJson::of(&s.budget, &self.periods, now)),
                );
            }
        }
        for (runtime, task) in self.wake {
            hub.task_available(runtime, task);
        }
    }
}

/// `POST /api/budgets` (owners/admins): 201 with the budget; 409 for a
/// second budget of the same scope and period, or past [`MAX_BUDGETS`].
async fn create(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    hub: web::Data<DaemonHub>,
    access: WorkspaceAccess,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !access.role.is_manager() {
        return Err(not_a_budget_manager());
    }
    let request = parse_create(&super::json_object(&body)?)?;
    let announced = db
        .write(move |tx| -> Result<_, ApiError> {
            // the cap and the one-per-scope rule are over the workspace's rows
            workspaces::lock(tx, access.workspace_id)?;
            require_budget_manager(tx, &access)?;
            require_scope(tx, access.workspace_id, &request)?;
            if budgets::exists(
                tx,
                access.workspace_id,
                request.scope,
                request.scope_id,
                request.period,
            )? {
                return Err(ApiError::conflict(format!(
                    "a {} budget of this {} exists already: change it with PUT",
                    request.period, request.scope
                )));
            }
            if budgets::count(tx, access.workspace_id)? >= MAX_BUDGETS {
                return Err(ApiError::conflict(format!(
                    "a workspace holds at most {MAX_BUDGETS} budgets"
                )));
            }
            // usage writes in flight either land in the spend read below or
            // charge the new budget once they see it
            budgets::hold_for_counting(tx, access.workspace_id)?;
            let periods = periods_of(tx, access.workspace_id)?;
            let (start, _) = periods.of(request.period);
            let spent = Counter::new(tx, access.workspace_id)?.spent(
                tx,
                (request.scope, request.scope_id),
                start,
            )?;
            let budget = budgets::insert(
                tx,
                &NewBudget {
                    workspace: access.workspace_id,
                    scope: request.scope,
                    scope_id: request.scope_id,
                    period: request.period,
                    limit_ticks: request.limit_ticks,
                    warn_percent: request.warn_percent,
                    period_start: start,
                    spent_ticks: spent,
                    created_by: access.user_id,
                },
            )?;
            let settled = budgets::settle(tx, budget, &periods)?;
            Announcement::of(tx, access.workspace_id, vec![settled], periods)
        })
        .await?;
    let reply = announced.reply()?;
    announced.publish(&events, &hub);
    Ok(HttpResponse::Created().json(reply))
}

/// `PUT /api/budgets/{id}` (owners/admins): `{limit_usd?, warn_percent?}`.
async fn update(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    hub: web::Data<DaemonHub>,
    access: WorkspaceAccess,
    path: web::Path<BudgetId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !access.role.is_manager() {
        return Err(not_a_budget_manager());
    }
    let id = path.into_inner();
    let body = super::json_object(&body)?;
    only(&body, &["limit_usd", "warn_percent"])?;
    let limit = match body.get("limit_usd") {
        None => None,
        some => Some(limit_field(some)?),
    };
    let warn = match body.get("warn_percent") {
        None => None,
        some => Some(warn_field(some, None)?),
    };
    if limit.is_none() && warn.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: give limit_usd or warn_percent",
        ));
    }
    let announced = db
        .write(move |tx| -> Result<_, ApiError> {
            require_budget_manager(tx, &access)?;
            let budget = budgets::get(tx, access.workspace_id, id)?
                .ok_or_else(|| ApiError::not_found("budget not found"))?;
            let budget = budgets::update(
                tx,
                id,
                limit.unwrap_or(budget.limit_ticks),
                warn.unwrap_or(budget.warn_percent),
            )?
            .ok_or_else(|| ApiError::not_found("budget not found"))?;
            let periods = periods_of(tx, access.workspace_id)?;
            let settled = budgets::settle(tx, budget, &periods)?;
            Announcement::of(tx, access.workspace_id, vec![settled], periods)
        })
        .await?;
    let reply = announced.reply()?;
    announced.publish(&events, &hub);
    Ok(HttpResponse::Ok().json(reply))
}

/// `DELETE /api/budgets/{id}` (owners/admins): the tasks it held back may
/// be claimed at once.
async fn delete(
    db: web::Data<Store>,
    hub: web::Data<DaemonHub>,
    access: WorkspaceAccess,
    path: web::Path<BudgetId>,
) -> Result<HttpResponse, ApiError> {
    if !access.role.is_manager() {
        return Err(not_a_budget_manager());
    }
    let id = path.into_inner();
    let wake = db
        .write(move |tx| -> Result<_, ApiError> {
            require_budget_manager(tx, &access)?;
            let budget = budgets::get(tx, access.workspace_id, id)?
                .ok_or_else(|| ApiError::not_found("budget not found"))?;
            budgets::delete(tx, access.workspace_id, id)?;
            Ok(
                if budget.blocked_until.is_some_and(|t| t > Timestamp::now()) {
                    budgets::queued_runtimes(tx, access.workspace_id)?
                } else {
                    Vec::new()
                },
            )
        })
        .await?;
    for (runtime, task) in wake {
        hub.task_available(runtime, task);
    }
    Ok(super::ok())
}

/// The budgets of a workspace whose zone changed: each counter starts
/// over in the new zone's current period, from the usage stored for it
/// (as a new budget starts), and is settled.
pub fn reseed(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<Announcement, ApiError> {
    budgets::hold_for_counting(conn, workspace)?;
    let periods = periods_of(conn, workspace)?;
    let mut counter = Counter::new(conn, workspace)?;
    let mut settled = Vec::new();
    for budget in budgets::list(conn, workspace)? {
        let (start, _) = periods.of(budget.period);
        let spent = counter.spent(conn, (budget.scope, budget.scope_id), start)?;
        if let Some(budget) = budgets::restart(conn, budget.id, start, spent)? {
            settled.push(budgets::settle(conn, budget, &periods)?);
        }
    }
    Announcement::of(conn, workspace, settled, periods)
}

/// What one usage write changed the task's cost by, in ticks: the
/// reported cost where there is one, else the estimate at the price of
/// the UTC day the row was first recorded (as every usage page prices
/// it).
pub fn cost_change(prices: &PriceBook, entry: &UsageEntry, change: &UsageChange) -> i64 {
    let price = prices.price_for(
        &entry.provider,
        &entry.model,
        change.bucket.utc().date_naive(),
    );
    let cost = |(c, reported): ([i64; 4], Option<i64>)| {
        let tokens = Tokens {
            input: c[0],
            output: c[1],
            cache_read: c[2],
            cache_write: c[3],
        };
        pricing::cost_ticks(tokens, reported, price.as_ref()).0
    };
    cost(change.after).saturating_sub(change.before.map_or(0, cost))
}
