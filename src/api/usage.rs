//! Token usage: daemons' per-runtime day totals, and the workspace usage
//! pages (daily by model, summary by model) over task usage.
//!
//! Windows: `days=N` means the last N calendar days, today included, in
//! UTC or in the `?tz=` zone. N must be 1..365; anything else (0, negative,
//! too large, not a number) falls back to the route's default.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use chrono::{NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::access::{require_daemon_runtime, require_member_runtime};
use crate::auth::{AuthUser, Caller, WorkspaceAccess};
use crate::domain::{AgentId, RuntimeId, Timestamp, WorkspaceId};
use crate::error::ApiError;
use crate::pricing::PriceBook;
use crate::store::usage::{self, RuntimeUsage, UsageEntry, UsageSource};
use crate::store::Conn;
use crate::store::Store;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/daemon/runtimes/{id}/usage",
        web::post().to(report_runtime_usage),
    )
    .route("/runtimes/{id}/usage", web::get().to(runtime_usage))
    .route(
        "/runtimes/{id}/usage/by-agent",
        web::get().to(runtime_usage_by_agent),
    )
    .route(
        "/runtimes/{id}/usage/by-hour",
        web::get().to(runtime_usage_by_hour),
    )
    .route("/usage/daily", web::get().to(daily))
    .route("/usage/summary", web::get().to(summary));
}

const COUNTS: [&str; 4] = [
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
];

/// The largest token count one entry may carry: 2^53, the largest integer
/// every JSON client (a browser included) reads exactly, and far below
/// where adding a few thousand of them could leave 64 bits.
pub const MAX_COUNT: i64 = 1 << 53;

/// Reads one usage entry from loosely typed JSON, so that one bad entry is
/// reported on its own instead of failing the whole body. Counts must be
/// integers in 0..=2^53 (absent means 0); provider must be a non-empty
/// string; no text may contain NUL.
pub fn parse_entry(value: &Value) -> Result<UsageEntry, String> {
    let object = value.as_object().ok_or("entry must be an object")?;
    let text = |field: &str| -> Result<String, String> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => super::text(Some(s), field).map_err(|e| e.to_string()),
            Some(_) => Err(format!("{field} must be a string")),
        }
    };
    let provider = text("provider")?;
    if provider.is_empty() {
        return Err("provider is required".to_string());
    }
    let model = text("model")?;
    let mut counts = [0i64; 4];
    for (slot, field) in counts.iter_mut().zip(COUNTS) {
        *slot = match object.get(field) {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_i64()
                .filter(|n| (0..=MAX_COUNT).contains(n))
                .ok_or_else(|| {
                    format!("{field} must be an integer between 0 and {MAX_COUNT} (2^53)")
                })?,
        };
    }
    Ok(UsageEntry {
        provider,
        model,
        input_tokens: counts[0],
        output_tokens: counts[1],
        cache_read_tokens: counts[2],
        cache_write_tokens: counts[3],
    })
}

/// The provider's own price of a task usage entry, `cost_usd_ticks` in
/// 1e-10 USD: an integer in 0..=2^53 (absent or null: none). 0 is what a
/// daemon that knows no price sends, so it means "no cost reported" too.
pub fn parse_cost(value: &Value) -> Result<Option<i64>, String> {
    match value.get("cost_usd_ticks") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .filter(|n| (0..=MAX_COUNT).contains(n))
            .map(|n| Some(n).filter(|n| *n > 0))
            .ok_or_else(|| {
                format!("cost_usd_ticks must be an integer between 0 and {MAX_COUNT} (2^53)")
            }),
    }
}

/// A calendar date written exactly as `YYYY-MM-DD`, no later than
/// tomorrow (UTC): a daemon ahead of UTC may already be on the next day,
/// but nothing has used tokens further ahead, and a far-future day would
/// sit in every "last N days" window.
fn parse_date(value: Option<&Value>) -> Result<String, String> {
    let text = value
        .and_then(Value::as_str)
        .ok_or("date is required (YYYY-MM-DD)")?;
    let well_formed = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|_| well_formed)
        .ok_or_else(|| format!("date {text:?} is not a calendar date (YYYY-MM-DD)"))?;
    if date > Utc::now().date_naive() + chrono::Days::new(1) {
        return Err(format!(
            "date {text:?} is in the future (more than one day after today, UTC)"
        ));
    }
    Ok(text.to_string())
}

/// Entries one runtime report may carry: they are written in one
/// transaction, so its size bounds how long other writers wait. A day has
/// far fewer (provider, model) pairs than this.
pub const MAX_RUNTIME_REPORT_ENTRIES: usize = 1000;
/// Entries one task report may carry, in one transaction like the above; a
/// task uses a handful of models.
pub const MAX_TASK_REPORT_ENTRIES: usize = 100;

#[derive(Deserialize)]
struct UsageReport {
    entries: Vec<Value>,
}

#[derive(Serialize)]
struct Rejected {
    index: usize,
    error: String,
}

#[derive(Serialize)]
struct ReportReply {
    status: &'static str,
    accepted: usize,
    rejected: Vec<Rejected>,
}

/// Stores every valid entry in one transaction and lists the others by
/// index: nothing valid is dropped for a bad neighbour, nothing invalid is
/// dropped silently.
async fn report_runtime_usage(
    db: web::Data<Store>,
    caller: Caller,
    path: web::Path<RuntimeId>,
    body: web::Json<UsageReport>,
) -> Result<HttpResponse, ApiError> {
    let runtime = path.into_inner();
    let entries = body.into_inner().entries;
    if entries.len() > MAX_RUNTIME_REPORT_ENTRIES {
        return Err(ApiError::bad_request(format!(
            "a report carries at most {MAX_RUNTIME_REPORT_ENTRIES} entries"
        )));
    }
    let mut valid = Vec::new();
    let mut rejected = Vec::new();
    for (index, value) in entries.iter().enumerate() {
        let parsed = parse_date(value.get("date"))
            .and_then(|date| parse_entry(value).map(|entry| (date, entry)));
        match parsed {
            Ok(ok) => valid.push(ok),
            Err(error) => rejected.push(Rejected { index, error }),
        }
    }
    let accepted = valid.len();
    db.write(move |tx| -> Result<_, ApiError> {
        require_daemon_runtime(tx, &caller, runtime)?;
        let at = Timestamp::now();
        for (date, entry) in &valid {
            usage::upsert_runtime_usage(tx, runtime, date, entry, at)?;
        }
        Ok(())
    })
    .await?;
    Ok(HttpResponse::Ok().json(ReportReply {
        status: "ok",
        accepted,
        rejected,
    }))
}

#[derive(Deserialize)]
pub(crate) struct WindowQuery {
    days: Option<String>,
    tz: Option<String>,
}

impl WindowQuery {
    fn days(&self, default: i64) -> i64 {
        self.days
            .as_deref()
            .and_then(|d| d.trim().parse::<i64>().ok())
            .filter(|d| (1..=365).contains(d))
            .unwrap_or(default)
    }

    /// `None` for UTC.
    fn zone(&self) -> Result<Option<Tz>, ApiError> {
        zone(self.tz.as_deref())
    }
}

/// The IANA zone a `?tz=` names, `None` for UTC (or none given); an
/// unknown zone is a 400.
pub(crate) fn zone(tz: Option<&str>) -> Result<Option<Tz>, ApiError> {
    match tz.map(str::trim) {
        None | Some("") | Some("UTC") | Some("Etc/UTC") => Ok(None),
        Some(name) => name
            .parse::<Tz>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("unknown time zone {name:?}"))),
    }
}

/// `GET /api/runtimes/{id}/usage?days=N&tz=Zone` (default 90): the
/// runtime's usage per (local date, provider, model) for the last N days,
/// newest first, with its cost. Per (date, provider, model), the usage of
/// the tasks that ran on it wins; what an older daemon reported for the
/// runtime is shown only where no task recorded usage, so nothing is
/// counted twice (see [`merge_sources`]). Task usage is read from the
/// quarter-hour rollup, so every zone is exact; a report carries the
/// daemon's own date, whatever the zone.
async fn runtime_usage(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<RuntimeId>,
    query: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    let runtime = path.into_inner();
    let days = LocalDays::of(&query, 90)?;
    let from = days.first.format("%Y-%m-%d").to_string();
    let (reported, quarters, overrides) = db
        .read(move |conn| -> Result<_, ApiError> {
            let (rt, _) = require_member_runtime(conn, caller.user_id, runtime)?;
            let reported = usage::runtime_reports(conn, runtime, &from)?;
            let quarters = bounded_quarters(conn, runtime, days.start())?;
            let overrides = crate::store::pricing::overrides(conn, rt.workspace_id)?;
            Ok((reported, quarters, overrides))
        })
        .await?;
    let prices = PriceBook::new(overrides);
    let mut from_tasks: BTreeMap<(NaiveDate, String, String), Sums> = BTreeMap::new();
    for q in &quarters {
        from_tasks
            .entry((days.date_of(q.bucket), q.provider.clone(), q.model.clone()))
            .or_default()
            .add(
                &prices,
                &q.provider,
                &q.model,
                q.bucket.date_naive(),
                &q.counts,
            );
    }
    let tasks = from_tasks
        .into_iter()
        .map(|((date, provider, model), sums)| {
            let c = sums.counts;
            let costed = sums.costed();
            RuntimeUsageRow {
                usage: RuntimeUsage {
                    runtime_id: runtime,
                    date: date.format("%Y-%m-%d").to_string(),
                    provider,
                    model,
                    input_tokens: c[0],
                    output_tokens: c[1],
                    cache_read_tokens: c[2],
                    cache_write_tokens: c[3],
                    cost_usd_ticks: (c[4] > 0).then_some(c[4]),
                    source: UsageSource::TaskUsage,
                },
                cost_usd: costed.cost_usd,
                uncosted_tokens: costed.uncosted_tokens,
            }
        });
    let reported = reported.into_iter().map(|r| {
        // a report has no cost of its own: priced on its date
        let day = NaiveDate::parse_from_str(&r.date, "%Y-%m-%d").unwrap_or(days.first);
        let t = [
            r.input_tokens,
            r.output_tokens,
            r.cache_read_tokens,
            r.cache_write_tokens,
        ];
        let mut sums = Sums::default();
        let counts = [t[0], t[1], t[2], t[3], 0, t[0], t[1], t[2], t[3], 0];
        sums.add(&prices, &r.provider, &r.model, day, &counts);
        let costed = sums.costed();
        RuntimeUsageRow {
            usage: r,
            cost_usd: costed.cost_usd,
            uncosted_tokens: costed.uncosted_tokens,
        }
    });
    Ok(HttpResponse::Ok().json(merge_sources(reported.collect(), tasks.collect())))
}

/// A row of a runtime's usage page: Multica's fields, and what it cost
/// (see [`CostedCounts`]).
#[derive(Serialize)]
struct RuntimeUsageRow {
    #[serde(flatten)]
    usage: RuntimeUsage,
    cost_usd: f64,
    uncosted_tokens: i64,
}

/// Multica's counts of a runtime usage row, and what it cost.
#[derive(Serialize, Default)]
pub(crate) struct CostedCounts {
    input_tokens: i64,
    output_tokens: i64,
    cache_read_tokens: i64,
    cache_write_tokens: i64,
    /// What providers reported (1e-10 USD).
    cost_usd_ticks: i64,
    /// The tokens of usage no provider put a cost on.
    uncosted_input_tokens: i64,
    uncosted_output_tokens: i64,
    uncosted_cache_read_tokens: i64,
    uncosted_cache_write_tokens: i64,
    task_count: i64,
    /// The reported cost plus the estimate of the rest at the price of
    /// each UTC day.
    pub(crate) cost_usd: f64,
    /// Of those, the tokens no price covered (counted at $0).
    uncosted_tokens: i64,
}

/// Sums of quarter rollup rows, with their cost.
#[derive(Default, Clone)]
pub(crate) struct Sums {
    counts: [i64; 10],
    /// Reported cost plus estimate, in ticks.
    ticks: i64,
    unpriced: i64,
}

impl Sums {
    /// Adds the counts (in [`usage::QUARTER_COLUMNS`] order) of
    /// `provider`/`model` used on the UTC day `day`, priced on that day.
    pub(crate) fn add(
        &mut self,
        prices: &PriceBook,
        provider: &str,
        model: &str,
        day: NaiveDate,
        c: &[i64; 10],
    ) {
        for (sum, n) in self.counts.iter_mut().zip(c) {
            *sum = sum.saturating_add(*n);
        }
        let uncosted = crate::pricing::Tokens {
            input: c[5],
            output: c[6],
            cache_read: c[7],
            cache_write: c[8],
        };
        let (estimate, unpriced) = match prices.price_for(provider, model, day) {
            Some(price) => (
                crate::pricing::cost_ticks(uncosted, None, Some(&price)).0,
                0,
            ),
            None => (0, uncosted.total()),
        };
        self.ticks = self.ticks.saturating_add(c[4]).saturating_add(estimate);
        self.unpriced = self.unpriced.saturating_add(unpriced);
    }

    /// Reported cost plus estimate, in ticks.
    pub(crate) fn ticks(&self) -> i64 {
        self.ticks
    }

    /// Adds sums already priced.
    pub(crate) fn merge(&mut self, other: &Sums) {
        for (sum, n) in self.counts.iter_mut().zip(other.counts) {
            *sum = sum.saturating_add(n);
        }
        self.ticks = self.ticks.saturating_add(other.ticks);
        self.unpriced = self.unpriced.saturating_add(other.unpriced);
    }

    pub(crate) fn costed(&self) -> CostedCounts {
        let c = self.counts;
        CostedCounts {
            input_tokens: c[0],
            output_tokens: c[1],
            cache_read_tokens: c[2],
            cache_write_tokens: c[3],
            cost_usd_ticks: c[4],
            uncosted_input_tokens: c[5],
            uncosted_output_tokens: c[6],
            uncosted_cache_read_tokens: c[7],
            uncosted_cache_write_tokens: c[8],
            task_count: c[9],
            cost_usd: crate::pricing::ticks_usd(self.ticks),
            uncosted_tokens: self.unpriced,
        }
    }
}

/// A runtime's quarter-hour rows since `from`; a 400 past
/// [`usage::MAX_RUNTIME_QUARTERS`] rather than a reply of unbounded size.
fn bounded_quarters(
    conn: &Conn<'_>,
    runtime: RuntimeId,
    from: chrono::DateTime<Utc>,
) -> Result<Vec<usage::QuarterUsage>, ApiError> {
    let rows = usage::runtime_quarters(conn, runtime, from)?;
    if rows.len() as i64 > usage::MAX_RUNTIME_QUARTERS {
        return Err(ApiError::bad_request(format!(
            "this runtime's usage in the window is more than {} quarter-hour rows: ask for fewer days",
            usage::MAX_RUNTIME_QUARTERS
        )));
    }
    Ok(rows)
}

/// How usage rows name agents to one caller: by id; `"private"` for the
/// private agents of others unless the caller is an owner or admin (one
/// row for all of them); `null` for tasks without an agent and agents
/// deleted since.
pub(crate) struct AgentNames {
    manager: bool,
    caller: crate::domain::UserId,
    known: std::collections::HashMap<
        AgentId,
        (crate::domain::Visibility, Option<crate::domain::UserId>),
    >,
}

impl AgentNames {
    pub(crate) fn load(
        conn: &Conn<'_>,
        workspace: WorkspaceId,
        caller: crate::domain::UserId,
        role: crate::domain::Role,
    ) -> Result<AgentNames, ApiError> {
        let known = crate::store::agents::directory(conn, workspace)?
            .into_iter()
            .map(|(id, visibility, owner)| (id, (visibility, owner)))
            .collect();
        Ok(AgentNames {
            manager: role.is_manager(),
            caller,
            known,
        })
    }

    pub(crate) fn value(&self, agent: Option<AgentId>) -> Value {
        let Some(id) = agent else {
            return Value::Null;
        };
        match self.known.get(&id) {
            None => Value::Null,
            Some((visibility, owner))
                if !self.manager
                    && *visibility != crate::domain::Visibility::Workspace
                    && *owner != Some(self.caller) =>
            {
                json!("private")
            }
            Some(_) => json!(id),
        }
    }
}

/// The rollup rows of a runtime the caller may read over the query's
/// window, how to name their agents, and the workspace's prices.
async fn runtime_quarters(
    db: &Store,
    caller: AuthUser,
    runtime: RuntimeId,
    query: &WindowQuery,
) -> Result<(Vec<usage::QuarterUsage>, AgentNames, PriceBook, Option<Tz>), ApiError> {
    let (days, zone) = (query.days(30), query.zone()?);
    let start = window_start(zone, days);
    let (rows, names, overrides) = db
        .read(move |conn| -> Result<_, ApiError> {
            let (rt, role) = require_member_runtime(conn, caller.user_id, runtime)?;
            let rows = bounded_quarters(conn, runtime, start)?;
            let names = AgentNames::load(conn, rt.workspace_id, caller.user_id, role)?;
            let overrides = crate::store::pricing::overrides(conn, rt.workspace_id)?;
            Ok((rows, names, overrides))
        })
        .await?;
    Ok((rows, names, PriceBook::new(overrides), zone))
}

/// What a row of usage per (agent or runtime, provider, model) is about.
#[derive(Serialize)]
pub(crate) enum Keyed {
    /// The agent's id; `null` for tasks without an agent or whose agent
    /// is gone; `"private"` for the agents the caller may not see, folded
    /// into one row per (provider, model) (see [`AgentNames`]).
    #[serde(rename = "agent_id")]
    Agent(Value),
    /// The runtime's id (maybe deleted since); `null` for tasks no runtime
    /// claimed.
    #[serde(rename = "runtime_id")]
    Runtime(Value),
}

/// One (agent or runtime, provider, model) of usage, with its cost.
#[derive(Serialize)]
pub(crate) struct KeyedUsageRow {
    #[serde(flatten)]
    key: Keyed,
    provider: String,
    model: String,
    #[serde(flatten)]
    counts: CostedCounts,
}

/// Usage grouped by (agent or runtime as a row shows it, provider,
/// model).
#[derive(Default)]
pub(crate) struct ByKey(BTreeMap<(String, String, String), (Value, Sums)>);

impl ByKey {
    /// The sums of (`key`, `provider`, `model`).
    pub(crate) fn at(&mut self, key: Value, provider: &str, model: &str) -> &mut Sums {
        &mut self
            .0
            .entry((key.to_string(), provider.to_string(), model.to_string()))
            .or_insert_with(|| (key, Sums::default()))
            .1
    }

    /// The rows, costliest first, their key wrapped by `keyed`.
    pub(crate) fn rows(self, keyed: fn(Value) -> Keyed) -> Vec<KeyedUsageRow> {
        let mut out: Vec<KeyedUsageRow> = self
            .0
            .into_iter()
            .map(|((_, provider, model), (key, sums))| KeyedUsageRow {
                key: keyed(key),
                provider,
                model,
                counts: sums.costed(),
            })
            .collect();
        out.sort_by(|a, b| b.counts.cost_usd.total_cmp(&a.counts.cost_usd));
        out
    }
}

/// `GET /api/runtimes/{id}/usage/by-agent?days=N&tz=Zone` (default 30):
/// members of the runtime's workspace; the last N local days, exact in
/// any zone (the rollup has quarter-hour buckets). Ordered by cost, most
/// first.
async fn runtime_usage_by_agent(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<RuntimeId>,
    query: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, names, prices, _) = runtime_quarters(&db, caller, path.into_inner(), &query).await?;
    let mut grouped = ByKey::default();
    for row in &rows {
        grouped
            .at(names.value(row.agent_id), &row.provider, &row.model)
            .add(
                &prices,
                &row.provider,
                &row.model,
                row.bucket.date_naive(),
                &row.counts,
            );
    }
    Ok(HttpResponse::Ok().json(grouped.rows(Keyed::Agent)))
}

/// One (local hour of the day, model) of a runtime's usage.
#[derive(Serialize)]
struct HourUsageRow {
    hour: u32,
    model: String,
    #[serde(flatten)]
    counts: CostedCounts,
}

/// `GET /api/runtimes/{id}/usage/by-hour?days=N&tz=Zone` (default 30):
/// the runtime's usage per hour of the day (0..23, local) and model over
/// the last N local days, by hour then model; hours without usage are
/// left out. A quarter hour never straddles a local hour, so every zone is
/// exact.
async fn runtime_usage_by_hour(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<RuntimeId>,
    query: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, _, prices, zone) = runtime_quarters(&db, caller, path.into_inner(), &query).await?;
    let mut grouped: BTreeMap<(u32, String), Sums> = BTreeMap::new();
    for row in &rows {
        let hour = match zone {
            Some(tz) => chrono::Timelike::hour(&row.bucket.with_timezone(&tz)),
            None => chrono::Timelike::hour(&row.bucket),
        };
        grouped.entry((hour, row.model.clone())).or_default().add(
            &prices,
            &row.provider,
            &row.model,
            row.bucket.date_naive(),
            &row.counts,
        );
    }
    let out: Vec<HourUsageRow> = grouped
        .into_iter()
        .map(|((hour, model), sums)| HourUsageRow {
            hour,
            model,
            counts: sums.costed(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

/// The UTC instant the last `days` local days (today included) start at,
/// in `zone` (UTC without one).
fn window_start(zone: Option<Tz>, days: i64) -> chrono::DateTime<Utc> {
    let back = chrono::Days::new(days as u64 - 1);
    match zone {
        Some(tz) => local_midnight(tz, Utc::now().with_timezone(&tz).date_naive() - back),
        None => (Utc::now().date_naive() - back)
            .and_time(chrono::NaiveTime::MIN)
            .and_utc(),
    }
}

/// One row per (date, provider, model), newest date first: the task usage
/// row where there is one, else the reported one. A daemon's own report
/// covered everything its CLI did that day (tasks included, and work done
/// outside agenthub), so adding the two would count tasks twice.
fn merge_sources(
    reported: Vec<RuntimeUsageRow>,
    from_tasks: Vec<RuntimeUsageRow>,
) -> Vec<RuntimeUsageRow> {
    let mut rows: BTreeMap<(String, String, String), RuntimeUsageRow> = BTreeMap::new();
    for row in reported.into_iter().chain(from_tasks) {
        let u = &row.usage;
        rows.insert((u.date.clone(), u.provider.clone(), u.model.clone()), row);
    }
    let mut rows: Vec<RuntimeUsageRow> = rows.into_values().collect();
    // newest date first, then provider and model as stored
    rows.sort_by(|a, b| b.usage.date.cmp(&a.usage.date));
    rows
}

pub(crate) use crate::store::usage::local_midnight;

/// The last N whole local days of a query, today included, in its zone
/// (UTC without one).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalDays {
    pub zone: Option<Tz>,
    pub first: NaiveDate,
    pub last: NaiveDate,
}

impl LocalDays {
    /// `?days=N` (1..365, else `default`) and `?tz=` (unknown: 400).
    pub(crate) fn of(query: &WindowQuery, default: i64) -> Result<LocalDays, ApiError> {
        let (days, zone) = (query.days(default), query.zone()?);
        let today = match zone {
            Some(tz) => Utc::now().with_timezone(&tz).date_naive(),
            None => Utc::now().date_naive(),
        };
        Ok(LocalDays {
            zone,
            first: today - chrono::Days::new(days as u64 - 1),
            last: today,
        })
    }

    fn midnight(&self, date: NaiveDate) -> chrono::DateTime<Utc> {
        match self.zone {
            Some(tz) => local_midnight(tz, date),
            None => date.and_time(chrono::NaiveTime::MIN).and_utc(),
        }
    }

    /// When the first day starts.
    pub(crate) fn start(&self) -> chrono::DateTime<Utc> {
        self.midnight(self.first)
    }

    /// When the day after the last starts.
    pub(crate) fn end(&self) -> chrono::DateTime<Utc> {
        self.midnight(self.last + chrono::Days::new(1))
    }

    /// The local date of the instant `t`.
    pub(crate) fn date_of(&self, t: chrono::DateTime<Utc>) -> NaiveDate {
        match self.zone {
            Some(tz) => t.with_timezone(&tz).date_naive(),
            None => t.date_naive(),
        }
    }

    /// Where each day after the first starts.
    pub(crate) fn midnights(&self) -> Vec<chrono::DateTime<Utc>> {
        self.first
            .iter_days()
            .skip(1)
            .take_while(|d| *d <= self.last)
            .map(|d| self.midnight(d))
            .collect()
    }
}

/// Covers the days' window with `which`'s blocks (see [`usage::cover`]),
/// cut at every local midnight when `per_day` and at `cuts`; returns the
/// runs and where each label starts. With `zone_days` (per day, and the
/// days' zone the workspace's day zone), a label that is a whole local
/// day is read as one ([`usage::ZONE_DAY`]).
pub(crate) fn stretches(
    which: usage::Blocks,
    days: &LocalDays,
    per_day: bool,
    cuts: &[chrono::DateTime<Utc>],
    zone_days: bool,
) -> (Vec<usage::BlockRun>, Vec<chrono::DateTime<Utc>>) {
    let (start, end) = (days.start(), days.end());
    let mut all: Vec<chrono::DateTime<Utc>> = if per_day {
        days.midnights()
    } else {
        Vec::new()
    };
    all.extend(cuts.iter().copied());
    let cuts: Vec<_> = all
        .into_iter()
        .map(|c| usage::block_start(c, 15))
        .filter(|c| *c > start && *c < end)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut bounds = vec![start];
    bounds.extend(cuts.iter().copied());
    let whole: Vec<bool> = if per_day && zone_days {
        let midnights: std::collections::BTreeSet<_> =
            days.midnights().into_iter().chain([start, end]).collect();
        // consecutive bounds, both midnights: a whole local day
        bounds
            .iter()
            .zip(bounds.iter().skip(1).chain([&end]))
            .map(|(from, to)| midnights.contains(from) && midnights.contains(to))
            .collect()
    } else {
        Vec::new()
    };
    let runs = usage::cover(which, start, end, &cuts, &whole);
    (runs, bounds)
}

/// Block sums of a window with what they cost: `date` is the local date
/// they fall on (pages by day; `None` for whole windows).
pub(crate) struct CostedSum {
    pub date: Option<NaiveDate>,
    pub sum: usage::BlockSum,
    pub costed: Sums,
}

/// Reads `which`'s blocks of the workspace over `days`, per local date
/// when `per_day`, and prices them. The window is cut at every local
/// midnight (per day) and at every day a price takes effect, so each
/// stretch between two cuts has one date and one set of prices: the
/// prices of the UTC day it starts on.
pub(crate) fn costed_blocks(
    conn: &Conn<'_>,
    which: usage::Blocks,
    workspace: WorkspaceId,
    days: &LocalDays,
    per_day: bool,
    prices: &PriceBook,
) -> Result<Vec<CostedSum>, ApiError> {
    let (start, end) = (days.start(), days.end());
    let changes: Vec<_> = prices
        .changes(start.date_naive(), end.date_naive())
        .into_iter()
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        .collect();
    // whole local days of the zone the workspace keeps days in are read
    // as one row each
    let zone_days = per_day
        && which == usage::Blocks::Model
        && usage::zone_days_of(conn, workspace)? == Some(days.zone.unwrap_or(chrono_tz::UTC));
    let (runs, bounds) = stretches(which, days, per_day, &changes, zone_days);
    let sums = usage::block_sums(conn, which, workspace, &runs)?;
    Ok(sums
        .into_iter()
        .filter_map(|sum| {
            let from = *bounds.get(sum.label)?;
            let mut costed = Sums::default();
            costed.add(
                prices,
                &sum.provider,
                &sum.model,
                from.date_naive(),
                &sum.counts,
            );
            Some(CostedSum {
                date: per_day.then(|| days.date_of(from)),
                sum,
                costed,
            })
        })
        .collect())
}

/// The workspace's usage rows of `which` over the query's window (default
/// 30 days), priced with its prices.
async fn workspace_blocks(
    db: &Store,
    workspace: WorkspaceId,
    which: usage::Blocks,
    query: &WindowQuery,
    per_day: bool,
) -> Result<Vec<CostedSum>, ApiError> {
    let days = LocalDays::of(query, 30)?;
    db.read(move |conn| -> Result<_, ApiError> {
        let prices = PriceBook::new(crate::store::pricing::overrides(conn, workspace)?);
        costed_blocks(conn, which, workspace, &days, per_day, &prices)
    })
    .await
}

/// Multica's workspace usage totals, with what they cost.
#[derive(Serialize)]
struct Totals {
    total_input_tokens: i64,
    total_output_tokens: i64,
    total_cache_read_tokens: i64,
    total_cache_write_tokens: i64,
    task_count: i64,
    /// Reported costs plus the estimate of the rest at each day's prices.
    cost_usd: f64,
    /// Tokens no price covered (counted at $0).
    uncosted_tokens: i64,
}

impl From<&Sums> for Totals {
    fn from(s: &Sums) -> Totals {
        let c = s.costed();
        Totals {
            total_input_tokens: c.input_tokens,
            total_output_tokens: c.output_tokens,
            total_cache_read_tokens: c.cache_read_tokens,
            total_cache_write_tokens: c.cache_write_tokens,
            task_count: c.task_count,
            cost_usd: c.cost_usd,
            uncosted_tokens: c.uncosted_tokens,
        }
    }
}

#[derive(Serialize)]
struct DailyRow {
    date: String,
    model: String,
    #[serde(flatten)]
    totals: Totals,
}

#[derive(Serialize)]
struct SummaryRow {
    model: String,
    #[serde(flatten)]
    totals: Totals,
    /// Whether some of its tokens had no price: the unpriced models of
    /// the window are the rows with `priced: false`.
    priced: bool,
}

/// `GET /api/usage/daily?days=N&tz=Zone` (default 30): per local date and
/// model, newest date first; exact in every zone.
async fn daily(
    db: web::Data<Store>,
    access: WorkspaceAccess,
    query: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    let rows =
        workspace_blocks(&db, access.workspace_id, usage::Blocks::Model, &query, true).await?;
    let mut grouped: BTreeMap<(NaiveDate, String), Sums> = BTreeMap::new();
    for row in rows {
        let Some(date) = row.date else { continue };
        grouped
            .entry((date, row.sum.model))
            .or_default()
            .merge(&row.costed);
    }
    let mut out: Vec<DailyRow> = grouped
        .iter()
        .map(|((date, model), sums)| DailyRow {
            date: date.format("%Y-%m-%d").to_string(),
            model: model.clone(),
            totals: sums.into(),
        })
        .collect();
    out.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| a.model.cmp(&b.model)));
    Ok(HttpResponse::Ok().json(out))
}

/// `GET /api/usage/summary?days=N&tz=Zone` (default 30): per model,
/// heaviest (input + output) first.
async fn summary(
    db: web::Data<Store>,
    access: WorkspaceAccess,
    query: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    let rows = workspace_blocks(
        &db,
        access.workspace_id,
        usage::Blocks::Model,
        &query,
        false,
    )
    .await?;
    let mut by_model: BTreeMap<String, Sums> = BTreeMap::new();
    for row in rows {
        by_model
            .entry(row.sum.model)
            .or_default()
            .merge(&row.costed);
    }
    let mut out: Vec<SummaryRow> = by_model
        .iter()
        .map(|(model, sums)| SummaryRow {
            model: model.clone(),
            totals: sums.into(),
            priced: sums.unpriced == 0,
        })
        .collect();
    out.sort_by_key(|r| {
        std::cmp::Reverse(
            r.totals
                .total_input_tokens
                .saturating_add(r.totals.total_output_tokens),
        )
    });
    Ok(HttpResponse::Ok().json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("a date")
    }

    #[test]
    fn a_day_that_springs_forward_has_23_hours() {
        let days = LocalDays {
            zone: Some("America/Los_Angeles".parse().expect("a zone")),
            first: day("2026-03-07"),
            last: day("2026-03-09"),
        };
        let bounds: Vec<String> = std::iter::once(days.start())
            .chain(days.midnights())
            .chain(std::iter::once(days.end()))
            .map(|t| t.format("%Y-%m-%dT%H:%M").to_string())
            .collect();
        assert_eq!(
            bounds,
            [
                "2026-03-07T08:00",
                "2026-03-08T08:00",
                "2026-03-09T07:00",
                "2026-03-10T07:00"
            ]
        );
    }

    #[test]
    fn a_quarter_to_midnight_is_the_day_before_in_kathmandu() {
        let days = LocalDays {
            zone: Some("Asia/Kathmandu".parse().expect("a zone")),
            first: day("2026-06-01"),
            last: day("2026-06-01"),
        };
        // UTC+5:45: June 1st starts at 18:15 UTC on May 31st
        assert_eq!(
            days.start().format("%Y-%m-%dT%H:%M").to_string(),
            "2026-05-31T18:15"
        );
        let before = days.start() - chrono::Duration::minutes(15);
        assert_eq!(days.date_of(before), day("2026-05-31"));
        assert_eq!(days.date_of(days.start()), day("2026-06-01"));
    }
}
