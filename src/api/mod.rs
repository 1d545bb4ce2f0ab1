//! HTTP handlers, one module per resource. Each handler parses and
//! validates, checks access (extractors from `auth`), calls the `db` layer
//! and maps the result to JSON.

pub mod agents;
pub mod daemon;
pub mod events;
pub mod invitations;
pub mod me;
pub mod openapi;
pub mod runtimes;
pub mod tasks;
pub mod tokens;
pub mod usage;
pub mod workspaces;

use actix_web::{web, HttpResponse};
use serde::Serialize;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/metrics", web::get().to(crate::metrics::scrape))
        .service(
            web::scope("/api")
                .configure(me::configure)
                .configure(openapi::configure)
                .configure(agents::configure)
                .configure(tasks::configure)
                .configure(daemon::configure)
                .configure(events::configure)
                .configure(invitations::configure)
                .configure(runtimes::configure)
                .configure(tokens::configure)
                .configure(usage::configure)
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

async fn health() -> HttpResponse {
    ok()
}

/// Trims `value` and refuses it when empty: `"<field> is required"`.
pub fn required(value: Option<&str>, field: &str) -> Result<String, crate::error::ApiError> {
    let trimmed = value.map(str::trim).unwrap_or_default();
    if trimmed.is_empty() {
        return Err(crate::error::ApiError::bad_request(format!(
            "{field} is required"
        )));
    }
    Ok(trimmed.to_string())
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
