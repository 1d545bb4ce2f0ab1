//! Prices on the server: the built-in table with the workspace's
//! overrides (`/api/pricing`), and what a task's usage cost
//! (`GET /api/tasks/{id}/usage`). See [`crate::pricing`].

use actix_web::{web, HttpResponse};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::access::{member_role, require_task_reader};
use crate::auth::{AuthUser, WorkspaceAccess};
use crate::domain::{TaskId, Timestamp};
use crate::error::ApiError;
use crate::pricing::{self, CostSource, Price, PriceBook, PriceRow, PriceSource, Tokens};
use crate::store::pricing::{self as overrides, MAX_OVERRIDES};
use crate::store::usage;
use crate::store::Store;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/pricing", web::get().to(list))
        .route("/pricing/overrides", web::put().to(put_override))
        .route("/pricing/overrides", web::delete().to(delete_override))
        .route("/tasks/{id}/usage", web::get().to(task_usage));
}

/// A price as the API shows it: USD per million tokens.
#[derive(Serialize)]
struct PriceJson {
    provider: String,
    model: String,
    input_usd_per_mtok: f64,
    output_usd_per_mtok: f64,
    cache_read_usd_per_mtok: f64,
    cache_write_usd_per_mtok: f64,
    effective_from: NaiveDate,
    source: PriceSource,
}

impl From<&PriceRow> for PriceJson {
    fn from(row: &PriceRow) -> Self {
        PriceJson {
            provider: row.provider.clone(),
            model: row.model.clone(),
            input_usd_per_mtok: pricing::usd(row.price.input),
            output_usd_per_mtok: pricing::usd(row.price.output),
            cache_read_usd_per_mtok: pricing::usd(row.price.cache_read),
            cache_write_usd_per_mtok: pricing::usd(row.price.cache_write),
            effective_from: row.effective_from,
            source: row.source,
        }
    }
}

/// `GET /api/pricing` (members): the built-in table and the workspace's
/// overrides, by provider, model and date (built-in before override on
/// the same date). Bounded: the table, and at most [`MAX_OVERRIDES`].
async fn list(db: web::Data<Store>, access: WorkspaceAccess) -> Result<HttpResponse, ApiError> {
    let book = PriceBook::new(
        db.read(move |conn| overrides::overrides(conn, access.workspace_id))
            .await?,
    );
    let mut rows: Vec<&PriceRow> = book.rows().iter().collect();
    rows.sort_by(|a, b| {
        (
            &a.provider,
            &a.model,
            a.effective_from,
            a.source == PriceSource::Override,
        )
            .cmp(&(
                &b.provider,
                &b.model,
                b.effective_from,
                b.source == PriceSource::Override,
            ))
    });
    Ok(HttpResponse::Ok().json(rows.into_iter().map(PriceJson::from).collect::<Vec<_>>()))
}

#[derive(Deserialize)]
struct OverrideRequest {
    provider: Option<String>,
    model: Option<String>,
    input_usd_per_mtok: Option<Value>,
    output_usd_per_mtok: Option<Value>,
    cache_read_usd_per_mtok: Option<Value>,
    cache_write_usd_per_mtok: Option<Value>,
    effective_from: Option<String>,
    source: Option<Value>,
}

/// A price field: a number of USD per million tokens, 0 to
/// [`pricing::MAX_USD_PER_MTOK`], at most six decimals.
fn price_field(value: Option<&Value>, field: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "{field} must be a number of USD per million tokens from 0 to {} with at most 6 decimals",
            pricing::MAX_USD_PER_MTOK
        ))
    };
    match value {
        None | Some(Value::Null) => Err(ApiError::bad_request(format!("{field} is required"))),
        Some(Value::Number(n)) => n.as_f64().and_then(pricing::micro_usd).ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

/// A `YYYY-MM-DD` calendar date.
fn date_field(value: Option<&str>, field: &str) -> Result<NaiveDate, ApiError> {
    let text = super::required(value, field)?;
    NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .ok()
        // four-digit years only: chrono also reads `+12345-01-01`
        .filter(|d| text.len() == 10 && d.format("%Y-%m-%d").to_string() == text)
        .ok_or_else(|| {
            ApiError::bad_request(format!("{field} must be a calendar date (YYYY-MM-DD)"))
        })
}

/// The canonical (provider, model) a request names.
fn key(provider: Option<&str>, model: Option<&str>) -> Result<(String, String), ApiError> {
    let provider = super::required(provider, "provider")?;
    let model = super::required(model, "model")?;
    super::at_most(&provider, "provider", super::MAX_SHORT_TEXT)?;
    super::at_most(&model, "model", super::MAX_SHORT_TEXT)?;
    let (canonical_provider, canonical_model) = pricing::canonical(&provider, &model);
    if canonical_model.is_empty() {
        return Err(ApiError::bad_request(format!(
            "model {model:?} names no model once made canonical"
        )));
    }
    super::at_most(&canonical_provider, "provider", super::MAX_SHORT_TEXT)?;
    super::at_most(&canonical_model, "model", super::MAX_SHORT_TEXT)?;
    Ok((canonical_provider, canonical_model))
}

impl OverrideRequest {
    fn parse(self) -> Result<PriceRow, ApiError> {
        if self.source.is_some() {
            return Err(ApiError::bad_request(
                "source is not set by a request: an override is always \"override\"",
            ));
        }
        let (provider, model) = key(self.provider.as_deref(), self.model.as_deref())?;
        Ok(PriceRow {
            provider,
            model,
            price: Price {
                input: price_field(self.input_usd_per_mtok.as_ref(), "input_usd_per_mtok")?,
                output: price_field(self.output_usd_per_mtok.as_ref(), "output_usd_per_mtok")?,
                cache_read: price_field(
                    self.cache_read_usd_per_mtok.as_ref(),
                    "cache_read_usd_per_mtok",
                )?,
                cache_write: price_field(
                    self.cache_write_usd_per_mtok.as_ref(),
                    "cache_write_usd_per_mtok",
                )?,
            },
            effective_from: date_field(self.effective_from.as_deref(), "effective_from")?,
            source: PriceSource::Override,
        })
    }
}

/// The role as of this transaction: owners/admins only.
fn require_price_manager(
    tx: &crate::store::Conn<'_>,
    access: &WorkspaceAccess,
) -> Result<(), ApiError> {
    if member_role(tx, access.workspace_id, access.user_id)?.is_manager() {
        Ok(())
    } else {
        Err(not_a_price_manager())
    }
}

fn not_a_price_manager() -> ApiError {
    ApiError::forbidden("only workspace owners and admins can set prices")
}

/// `PUT /api/pricing/overrides` (owners/admins): sets the price of a
/// (provider, model) from `effective_from` on, stored under the canonical
/// names; 201 for a new override, 200 for new prices of an existing one.
async fn put_override(
    db: web::Data<Store>,
    access: WorkspaceAccess,
    body: web::Json<OverrideRequest>,
) -> Result<HttpResponse, ApiError> {
    // refused before the body is looked at (and again in the transaction)
    if !access.role.is_manager() {
        return Err(not_a_price_manager());
    }
    let row = body.into_inner().parse()?;
    let (created, row) = db
        .write(move |tx| -> Result<_, ApiError> {
            // the cap is a rule over the workspace's rows: concurrent
            // writes of two keys take turns here on every engine
            crate::store::workspaces::lock(tx, access.workspace_id)?;
            require_price_manager(tx, &access)?;
            let existing = overrides::overrides(tx, access.workspace_id)?;
            let replaces = existing.iter().any(|o| {
                (&o.provider, &o.model, o.effective_from)
                    == (&row.provider, &row.model, row.effective_from)
            });
            if !replaces && existing.len() as i64 >= MAX_OVERRIDES {
                return Err(ApiError::conflict(format!(
                    "a workspace holds at most {MAX_OVERRIDES} price overrides"
                )));
            }
            let created = overrides::put(
                tx,
                access.workspace_id,
                &row,
                access.user_id,
                Timestamp::now(),
            )?;
            Ok((created, row))
        })
        .await?;
    let json = PriceJson::from(&row);
    Ok(if created {
        HttpResponse::Created().json(json)
    } else {
        HttpResponse::Ok().json(json)
    })
}

#[derive(Deserialize)]
struct OverrideKey {
    provider: Option<String>,
    model: Option<String>,
    effective_from: Option<String>,
}

/// `DELETE /api/pricing/overrides?provider=&model=&effective_from=`
/// (owners/admins): 404 when there is no such override.
async fn delete_override(
    db: web::Data<Store>,
    access: WorkspaceAccess,
    query: web::Query<OverrideKey>,
) -> Result<HttpResponse, ApiError> {
    if !access.role.is_manager() {
        return Err(not_a_price_manager());
    }
    let (provider, model) = key(query.provider.as_deref(), query.model.as_deref())?;
    let from = date_field(query.effective_from.as_deref(), "effective_from")?;
    db.write(move |tx| -> Result<_, ApiError> {
        require_price_manager(tx, &access)?;
        if overrides::delete(tx, access.workspace_id, &provider, &model, from)? {
            Ok(())
        } else {
            Err(ApiError::not_found("price override not found"))
        }
    })
    .await?;
    Ok(super::ok())
}

/// One (provider, model) of a task's usage with what it cost.
#[derive(Serialize)]
struct CostedUsage {
    provider: String,
    model: String,
    input_tokens: i64,
    output_tokens: i64,
    cache_read_tokens: i64,
    cache_write_tokens: i64,
    /// USD: the provider's reported cost, else the estimate; 0 for an
    /// unpriced model (whose tokens are `uncosted_tokens`).
    cost_usd: f64,
    uncosted_tokens: i64,
    cost_source: CostSource,
    /// The price the estimate used, when there was one.
    priced_as: Option<PricedAs>,
}

#[derive(Serialize)]
struct PricedAs {
    provider: String,
    model: String,
    effective_from: NaiveDate,
    source: PriceSource,
}

/// `GET /api/tasks/{id}/usage` (whoever may read the task): each
/// (provider, model) the task used, priced on the UTC day its usage was
/// first recorded.
async fn task_usage(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<TaskId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let (rows, overrides) = db
        .read(move |conn| -> Result<_, ApiError> {
            let task = require_task_reader(conn, caller.user_id, id)?;
            Ok((
                usage::of_task(conn, id)?,
                overrides::overrides(conn, task.workspace_id)?,
            ))
        })
        .await?;
    let book = PriceBook::new(overrides);
    let costed: Vec<CostedUsage> = rows.into_iter().map(|row| cost(&book, row)).collect();
    Ok(HttpResponse::Ok().json(costed))
}

/// Prices one usage row with `prices` on the UTC day it was first
/// recorded.
fn cost(book: &PriceBook, row: usage::TaskUsage) -> CostedUsage {
    let day = row.created_at.utc().date_naive();
    let price = book.row_for(&row.provider, &row.model, day);
    let tokens = Tokens {
        input: row.input_tokens,
        output: row.output_tokens,
        cache_read: row.cache_read_tokens,
        cache_write: row.cache_write_tokens,
    };
    let (ticks, source) = pricing::cost_ticks(tokens, row.cost_usd_ticks, price.map(|p| &p.price));
    CostedUsage {
        provider: row.provider,
        model: row.model,
        input_tokens: row.input_tokens,
        output_tokens: row.output_tokens,
        cache_read_tokens: row.cache_read_tokens,
        cache_write_tokens: row.cache_write_tokens,
        cost_usd: pricing::ticks_usd(ticks),
        uncosted_tokens: if source == CostSource::Unpriced {
            tokens.total()
        } else {
            0
        },
        cost_source: source,
        priced_as: price
            .filter(|_| source == CostSource::Estimated)
            .map(|p| PricedAs {
                provider: p.provider.clone(),
                model: p.model.clone(),
                effective_from: p.effective_from,
                source: p.source,
            }),
    }
}
