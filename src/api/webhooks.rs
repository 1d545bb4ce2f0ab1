//! Outbound webhooks, registered by a workspace's owners and admins:
//! `POST/GET /api/webhooks`, `DELETE /api/webhooks/{id}` and
//! `GET /api/webhooks/{id}/deliveries`. What is sent, and how, is
//! [`crate::webhooks`]; the events are written by the schema's triggers.

use std::net::IpAddr;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};

use super::page::{self, Page};
use crate::access::member_role;
use crate::auth::{AuthUser, WorkspaceAccess};
use crate::config::WebhooksConfig;
use crate::domain::WebhookId;
use crate::error::ApiError;
use crate::store::webhooks::{self, Webhook, EVENT_TYPES};
use crate::store::{workspaces, Conn, Store};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhooks", web::post().to(create))
        .route("/webhooks", web::get().to(list))
        .route("/webhooks/{id}", web::delete().to(delete))
        .route("/webhooks/{id}/deliveries", web::get().to(deliveries));
}

/// Longest URL a webhook may have, in bytes.
const MAX_URL_BYTES: usize = 2048;

fn not_a_manager() -> ApiError {
    ApiError::forbidden("only workspace owners and admins can manage webhooks")
}

fn not_found() -> ApiError {
    ApiError::not_found("webhook not found")
}

/// The URL as given, if a webhook may post to it: `http` or `https`, a
/// host, no credentials, and (unless `allow_private`) not a loopback,
/// link-local or private address or `localhost`. A name is checked again
/// where it resolves, at every delivery (see [`crate::webhooks::Guard`]).
fn checked_url(raw: &str, allow_private: bool) -> Result<String, ApiError> {
    let raw = raw.trim();
    if raw.len() > MAX_URL_BYTES {
        return Err(ApiError::bad_request(format!(
            "url is too long (at most {MAX_URL_BYTES} bytes)"
        )));
    }
    let url = url::Url::parse(raw)
        .map_err(|e| ApiError::bad_request(format!("url is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ApiError::bad_request("url must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::bad_request(
            "url must not carry credentials: the signature proves the sender",
        ));
    }
    let private = match url.host() {
        None => return Err(ApiError::bad_request("url has no host")),
        Some(url::Host::Ipv4(ip)) => crate::webhooks::is_private(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => crate::webhooks::is_private(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    };
    if private && !allow_private {
        return Err(ApiError::bad_request(
            "url points at a loopback, link-local or private address, which webhooks may \
             not reach ([webhooks] allow_private_targets is off)",
        ));
    }
    Ok(url.to_string())
}

/// The event types asked for: a non-empty list of known ones, each once.
fn checked_events(value: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let wrong = || {
        ApiError::bad_request(format!(
            "events must be a non-empty list of event types: {}",
            EVENT_TYPES.join(", ")
        ))
    };
    let listed = value.and_then(Value::as_array).ok_or_else(wrong)?;
    if listed.is_empty() {
        return Err(wrong());
    }
    let mut events: Vec<String> = Vec::new();
    for value in listed {
        let event = value.as_str().ok_or_else(wrong)?;
        if !EVENT_TYPES.contains(&event) {
            return Err(ApiError::bad_request(format!(
                "{event:?} is not an event type ({})",
                EVENT_TYPES.join(", ")
            )));
        }
        if !events.iter().any(|e| e == event) {
            events.push(event.to_string());
        }
    }
    Ok(events)
}

/// A new secret: 32 random bytes, hex, after `whsec_`.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("whsec_{hex}")
}

/// `POST /api/webhooks {url, events}` (owners and admins of the
/// workspace): 201 `{id, url, events, secret, …}`. The secret signs every
/// delivery and is shown here only. At most
/// [`webhooks::MAX_PER_WORKSPACE`] per workspace (409).
async fn create(
    db: web::Data<Store>,
    config: web::Data<WebhooksConfig>,
    access: WorkspaceAccess,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !access.role.is_manager() {
        return Err(not_a_manager());
    }
    let body = super::json_object(&body)?;
    let object = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    if let Some(other) = object
        .keys()
        .find(|k| !["url", "events"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "{other} is not a webhook setting (url, events)"
        )));
    }
    let url = match object.get("url") {
        Some(Value::String(url)) => checked_url(url, config.allow_private_targets)?,
        _ => return Err(ApiError::bad_request("url is required")),
    };
    let events = checked_events(object.get("events"))?;
    let secret = new_secret();
    let shown = secret.clone();
    let webhook = db
        .write(move |tx| -> Result<_, ApiError> {
            // the cap is over the workspace's rows
            workspaces::lock(tx, access.workspace_id)?;
            if !member_role(tx, access.workspace_id, access.user_id)?.is_manager() {
                return Err(not_a_manager());
            }
            if webhooks::count(tx, access.workspace_id)? >= webhooks::MAX_PER_WORKSPACE {
                return Err(ApiError::conflict(format!(
                    "a workspace has at most {} webhooks",
                    webhooks::MAX_PER_WORKSPACE
                )));
            }
            Ok(webhooks::create(
                tx,
                access.workspace_id,
                &url,
                &events,
                &secret,
                access.user_id,
            )?)
        })
        .await?;
    log::info!("webhook {} created by {}", webhook.id, access.user_id);
    let mut reply = serde_json::to_value(&webhook).unwrap_or_else(|_| json!({}));
    reply["secret"] = json!(shown);
    Ok(HttpResponse::Created().json(reply))
}

/// `GET /api/webhooks` (owners and admins): the workspace's webhooks,
/// oldest first, paginated; never their secrets.
async fn list(
    db: web::Data<Store>,
    access: WorkspaceAccess,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if !access.role.is_manager() {
        return Err(not_a_manager());
    }
    let page = Page::of(&req)?;
    let fetch = page.clone();
    let rows = db
        .read(move |conn| webhooks::list(conn, access.workspace_id, fetch.after(), fetch.fetch()))
        .await?;
    Ok(page::reply(&req, &page, rows, |w: &Webhook| {
        (w.created_at, w.id)
    }))
}

/// The webhook, if the caller manages its workspace; 404 for anyone else
/// (another workspace's webhook does not exist for them), 403 for a
/// member of its workspace.
fn require_webhook(
    conn: &Conn<'_>,
    user: crate::domain::UserId,
    id: WebhookId,
) -> Result<Webhook, ApiError> {
    let webhook = webhooks::get(conn, id)?.ok_or_else(not_found)?;
    match workspaces::role_of(conn, webhook.workspace_id, user)? {
        None => Err(not_found()),
        Some(role) if !role.is_manager() => Err(not_a_manager()),
        Some(_) => Ok(webhook),
    }
}

/// `DELETE /api/webhooks/{id}`: the webhook and its pending deliveries go.
async fn delete(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<WebhookId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    db.write(move |tx| -> Result<_, ApiError> {
        require_webhook(tx, caller.user_id, id)?;
        if !webhooks::delete(tx, id)? {
            return Err(not_found());
        }
        Ok(())
    })
    .await?;
    log::info!("webhook {id} deleted by {}", caller.user_id);
    Ok(super::ok())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    limit: Option<String>,
    before_seq: Option<String>,
}

/// `GET /api/webhooks/{id}/deliveries[?limit=N&before_seq=S]`: its
/// deliveries, newest event first, each with its attempts and the status
/// code each met. At most 100 a page (50 by default); when more follow,
/// `X-Next-Cursor` and `Link` name the next page's `before_seq`.
async fn deliveries(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<WebhookId>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let query = web::Query::<DeliveriesQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let limit = match query.limit.as_deref() {
        None => 50,
        Some(raw) => raw
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=webhooks::MAX_DELIVERIES_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "limit must be a whole number from 1 to {}",
                    webhooks::MAX_DELIVERIES_PAGE
                ))
            })?,
    };
    let before = match query.before_seq.as_deref() {
        None => None,
        Some(raw) => Some(
            raw.trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    ApiError::bad_request("before_seq must be a positive whole number")
                })?,
        ),
    };
    let mut rows = db
        .read(move |conn| -> Result<_, ApiError> {
            require_webhook(conn, caller.user_id, id)?;
            Ok(webhooks::deliveries(conn, id, before, limit + 1)?)
        })
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let mut reply = HttpResponse::Ok();
    if let Some(last) = rows.last().filter(|_| more) {
        let cursor = last.seq.to_string();
        reply.insert_header((
            header::LINK,
            page::next_link(&req, "before_seq", &cursor, &[]),
        ));
        reply.insert_header((page::NEXT_CURSOR, cursor));
    }
    Ok(reply.json(rows))
}
