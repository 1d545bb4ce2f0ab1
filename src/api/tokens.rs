//! The caller's own personal access tokens:
//! `GET /api/tokens`, `POST /api/tokens`, `DELETE /api/tokens/{id}`, and
//! `POST /api/tokens/current/renew` for the token of the request itself
//! (a PAT or a daemon token), which daemons call to stay signed in.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::auth::{AuthUser, Caller};
use crate::domain::{Timestamp, TokenId};
use crate::error::ApiError;
use crate::events::EventBus;
use crate::store::{self, tokens, Store};

/// Longest lifetime a PAT can be given through the API.
const MAX_EXPIRY_DAYS: i64 = 3650;
/// PATs a user may hold live (not revoked, not expired) through the API;
/// each one is a credential to keep track of, and the list is unpaged.
pub const MAX_LIVE_TOKENS: i64 = 100;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/tokens", web::get().to(list))
        .route("/tokens", web::post().to(create))
        .route("/tokens/{id}", web::delete().to(revoke))
        .route("/tokens/current/renew", web::post().to(renew));
}

async fn list(db: web::Data<Store>, caller: AuthUser) -> Result<HttpResponse, ApiError> {
    let rows = db
        .read(move |conn| tokens::list_personal(conn, caller.user_id))
        .await?;
    Ok(HttpResponse::Ok().json(rows))
}

#[derive(Deserialize)]
struct CreateToken {
    name: Option<String>,
    /// Days until the token expires; absent or null: never.
    expires_in_days: Option<i64>,
}

#[derive(Serialize)]
struct CreatedToken {
    #[serde(flatten)]
    row: tokens::PersonalToken,
    /// Shown once; only its hash is stored.
    token: String,
}

async fn create(
    db: web::Data<Store>,
    caller: AuthUser,
    body: web::Json<CreateToken>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let name = Some(super::text(body.name.as_deref(), "name")?)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "api".to_string());
    let expires_at = match body.expires_in_days {
        None => None,
        Some(days) if (1..=MAX_EXPIRY_DAYS).contains(&days) => {
            Some(Timestamp::now() + chrono::Duration::days(days))
        }
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "expires_in_days must be between 1 and {MAX_EXPIRY_DAYS}"
            )))
        }
    };
    let (row, token) = db
        .write(move |tx| -> Result<_, ApiError> {
            // the cap counts the user's rows: concurrent creations take turns
            store::users::lock(tx, caller.user_id)?;
            if tokens::count_live_personal(tx, caller.user_id)? >= MAX_LIVE_TOKENS {
                return Err(ApiError::conflict(format!(
                    "you already have {MAX_LIVE_TOKENS} active tokens; revoke one first"
                )));
            }
            Ok(tokens::create_personal(
                tx,
                caller.user_id,
                &name,
                expires_at,
            )?)
        })
        .await?;
    Ok(HttpResponse::Created().json(CreatedToken { row, token }))
}

async fn revoke(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: AuthUser,
    path: web::Path<TokenId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let revoked = db
        .write(move |tx| tokens::revoke_personal(tx, caller.user_id, id))
        .await?
        .ok_or_else(|| ApiError::not_found("token not found"))?;
    // streams and sockets opened with this token end; revoking it again
    // changes nothing and wakes nobody
    if revoked {
        events.access_changed();
    }
    Ok(super::ok())
}

/// What a daemon reads back from a renewal.
#[derive(Serialize)]
struct Renewed {
    /// The expiry now in force; empty for a token that never expires.
    expires_at: String,
    renewed: bool,
}

/// Extends the request's own token in place (see `tokens::renew`): the
/// daemon keeps using the token it has, and so does every other process
/// started with it, so no new secret is handed out. A token with more than
/// a week left is left as it is (`renewed: false`). Only personal access
/// and daemon tokens are renewed; any other credential is a 401, as is one
/// revoked or expired meanwhile. The body, if any, is not read.
async fn renew(
    db: web::Data<Store>,
    req: HttpRequest,
    _caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let hash = crate::auth::bearer_hash(&req)?;
    let renewal = db
        .write(move |tx| tokens::renew(tx, &hash, Timestamp::now()))
        .await?;
    let (expires_at, renewed) = match renewal {
        tokens::Renewal::Renewed { expires_at } => (expires_at.to_string(), true),
        tokens::Renewal::NotYet { expires_at } => (expires_at.to_string(), false),
        tokens::Renewal::NeverExpires => (String::new(), false),
        tokens::Renewal::Revoked => return Err(ApiError::unauthorized("token has been revoked")),
        tokens::Renewal::Expired => return Err(ApiError::unauthorized("token has expired")),
        tokens::Renewal::NotRenewable => {
            return Err(ApiError::unauthorized(
                "only personal access tokens and daemon tokens can be renewed",
            ))
        }
    };
    Ok(HttpResponse::Ok().json(Renewed {
        expires_at,
        renewed,
    }))
}
