//! HTTP handlers, one module per resource. Each handler parses and
//! validates, checks access (extractors from `auth`), calls the `store` layer
//! and maps the result to JSON.

pub mod agents;
pub mod budgets;
pub mod claims;
pub mod daemon;
pub mod daemon_gc;
pub mod daemon_tasks;
pub mod daemon_unsupported;
pub mod daemon_ws;
pub mod dashboard;
pub mod events;
pub mod invitations;
pub mod me;
pub mod openapi;
pub mod page;
pub mod pricing;
pub mod runtimes;
pub mod tasks;
pub mod tokens;
pub mod transcripts;
pub mod usage;
pub mod webhooks;
pub mod workspaces;

use actix_web::{guard, web, HttpResponse};
use serde::Serialize;

use crate::store::Store;

/// Paths that answer HEAD like GET (without the body): load balancers
/// probe health with HEAD. Not an operation of their own in openapi.json.
pub const HEAD_PATHS: &[&str] = &["/health"];

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .service(web::resource("/health").guard(guard::Head()).to(health))
        .route("/metrics", web::get().to(crate::metrics::scrape))
        .service(
            web::scope("/api")
                .configure(me::configure)
                .configure(openapi::configure)
                .configure(agents::configure)
                .configure(tasks::configure)
                .configure(budgets::configure)
                .configure(claims::configure)
                .configure(daemon::configure)
                .configure(daemon_tasks::configure)
                .configure(daemon_gc::configure)
                .configure(daemon_unsupported::configure)
                .configure(daemon_ws::configure)
                .configure(dashboard::configure)
                .configure(events::configure)
                .configure(invitations::configure)
                .configure(pricing::configure)
                .configure(runtimes::configure)
                .configure(tokens::configure)
                .configure(transcripts::configure)
                .configure(usage::configure)
                .configure(webhooks::configure)
                .configure(workspaces::configure),
        );
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
}

/// `{"status":"ok"}`, the reply of health checks and of writes with nothing
/// else to say.
pub fn ok() -> HttpResponse {
    HttpResponse::Ok().json(Status { status: "ok" })
}

#[derive(Serialize)]
struct Unhealthy {
    status: &'static str,
    error: String,
}

/// 200 `{"status":"ok"}`, or 503 while the database cannot be written
/// (disk full, read-only, I/O errors), saying why.
async fn health(db: web::Data<Store>) -> HttpResponse {
    match db.recheck_storage().await {
        None => ok(),
        Some(error) => HttpResponse::ServiceUnavailable().json(Unhealthy {
            status: "unavailable",
            error,
        }),
    }
}

/// A text field of a request, trimmed (absent: empty). NUL characters are
/// refused (`"<field> must not contain NUL characters"`): SQLite's
/// `length()` stops at the first one, so a CHECK on the stored text would
/// fail as a 500, and no client means to send one.
pub fn text(value: Option<&str>, field: &str) -> Result<String, crate::error::ApiError> {
    let trimmed = value.map(str::trim).unwrap_or_default();
    no_nul(trimmed, field)?;
    Ok(trimmed.to_string())
}

/// Refuses text with a NUL character (`"<field> must not contain NUL
/// characters"`), as [`text`] does: no stored text holds one, and
/// PostgreSQL refuses one even in a lookup.
pub fn no_nul(value: &str, field: &str) -> Result<(), crate::error::ApiError> {
    if value.contains('\0') {
        return Err(crate::error::ApiError::bad_request(format!(
            "{field} must not contain NUL characters"
        )));
    }
    Ok(())
}

/// Refuses a JSON value with a NUL character in any of its strings or keys
/// (`"<field> must not contain NUL characters"`), as [`text`] does for
/// text: PostgreSQL's `jsonb` cannot hold one, and both engines answer
/// alike.
pub fn json_without_nul(
    value: &serde_json::Value,
    field: &str,
) -> Result<(), crate::error::ApiError> {
    fn has_nul(value: &serde_json::Value) -> bool {
        use serde_json::Value;
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    if has_nul(value) {
        return Err(crate::error::ApiError::bad_request(format!(
            "{field} must not contain NUL characters"
        )));
    }
    Ok(())
}

/// Longest name-like text a daemon may send (ids, names, versions): these
/// are copied into every runtime of a registration and into its event.
pub const MAX_SHORT_TEXT: usize = 255;

/// Refuses a `field` longer than `max` bytes:
/// `"<field> is too long (at most <max> bytes)"`.
pub fn at_most(value: &str, field: &str, max: usize) -> Result<(), crate::error::ApiError> {
    if value.len() <= max {
        return Ok(());
    }
    Err(crate::error::ApiError::bad_request(format!(
        "{field} is too long (at most {max} bytes)"
    )))
}

/// [`text`] of at most [`MAX_SHORT_TEXT`] bytes (see [`at_most`]).
pub fn short_text(value: Option<&str>, field: &str) -> Result<String, crate::error::ApiError> {
    let value = text(value, field)?;
    at_most(&value, field, MAX_SHORT_TEXT)?;
    Ok(value)
}

/// [`text`] that must not be empty: `"<field> is required"`.
pub fn required(value: Option<&str>, field: &str) -> Result<String, crate::error::ApiError> {
    let trimmed = text(value, field)?;
    if trimmed.is_empty() {
        return Err(crate::error::ApiError::bad_request(format!(
            "{field} is required"
        )));
    }
    Ok(trimmed)
}

/// A body that must be a JSON object (400 otherwise, an empty body too).
pub fn json_object(body: &[u8]) -> Result<serde_json::Value, crate::error::ApiError> {
    match optional_json::<serde_json::Value>(body)? {
        Some(object @ serde_json::Value::Object(_)) => Ok(object),
        _ => Err(crate::error::ApiError::bad_request(
            "the body must be a JSON object",
        )),
    }
}

/// A JSON body that daemons may also leave empty: `Ok(None)` for no body,
/// 400 for malformed JSON (never silently ignored).
pub fn optional_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<Option<T>, crate::error::ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| crate::error::ApiError::bad_request(format!("invalid request body: {e}")))
}

/// A capacity setting as given: a whole number from 1 to `max`, or null
/// (`None`) for no limit; anything else is a 400 naming `field`.
pub fn capacity(
    value: &serde_json::Value,
    field: &str,
    max: i64,
) -> Result<Option<i64>, crate::error::ApiError> {
    if value.is_null() {
        return Ok(None);
    }
    match value.as_i64() {
        Some(n) if (1..=max).contains(&n) => Ok(Some(n)),
        _ => Err(crate::error::ApiError::bad_request(format!(
            "{field} must be a whole number from 1 to {max}, or null for no limit"
        ))),
    }
}
