//! Who is calling: bearer-token authentication and workspace scoping, as
//! actix extractors so handlers receive an identity instead of checking one.
//!
//! * [`Caller`] — a PAT user or a daemon token (daemon routes).
//! * [`AuthUser`] — a PAT user only (user routes).
//! * [`WorkspaceAccess`] — a PAT user who is a member of the workspace named
//!   by `X-Workspace-ID` or `?workspace_id=` (workspace-scoped user routes).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use chrono::Duration;
use serde::Deserialize;

use crate::domain::{AgentId, Role, TaskId, TaskTokenId, Timestamp, TokenId, UserId, WorkspaceId};
use crate::error::ApiError;
use crate::store::{tokens, workspaces, Store};

/// How long a daemon token minted through the API stays valid.
pub const DAEMON_TOKEN_LIFETIME_DAYS: i64 = 365;
/// `last_used_at` of a PAT is refreshed at most this often, so reads do not
/// turn into a write per request.
const TOUCH_INTERVAL_SECS: i64 = 60;

/// A daemon authenticated by its daemon token: it reaches one workspace.
#[derive(Debug, Clone)]
pub struct DaemonIdentity {
    pub token_id: TokenId,
    pub workspace_id: WorkspaceId,
    pub daemon_id: String,
    /// The member who minted the token, if they still exist.
    pub minted_by: Option<UserId>,
}

/// An agent run by a daemon, authenticated by the task-scoped token minted
/// when its task was claimed: it reaches that task and its agent, nothing
/// else.
#[derive(Debug, Clone)]
pub struct TaskIdentity {
    pub token_id: TaskTokenId,
    pub task_id: TaskId,
    pub workspace_id: WorkspaceId,
    pub agent_id: Option<AgentId>,
}

#[derive(Debug, Clone)]
pub enum Caller {
    User { user_id: UserId },
    Daemon(DaemonIdentity),
    Task(TaskIdentity),
}

/// A caller authenticated with a personal access token.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub user_id: UserId,
}

/// A PAT caller who is a member of the request's workspace.
#[derive(Debug, Clone, Copy)]
pub struct WorkspaceAccess {
    pub user_id: UserId,
    pub workspace_id: WorkspaceId,
    pub role: Role,
}

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

fn db_of(req: &HttpRequest) -> Result<Store, ApiError> {
    req.app_data::<web::Data<Store>>()
        .map(|d| d.get_ref().clone())
        .ok_or_else(|| ApiError::internal("database handle missing from app data"))
}

fn bearer_token(req: &HttpRequest) -> Result<String, ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing authorization header"))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("invalid authorization header"))?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("invalid authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized(
            "invalid authorization header: expected Bearer <token>",
        ));
    }
    Ok(token.trim().to_string())
}

/// The SHA-256 of the request's bearer token: a key for per-token limits
/// that never holds the token itself.
pub fn bearer_hash(req: &HttpRequest) -> Result<String, ApiError> {
    Ok(tokens::hash(&bearer_token(req)?))
}

/// 401 unless the stored token is neither revoked nor expired.
pub(crate) fn require_live(stored: &tokens::StoredToken, now: Timestamp) -> Result<(), ApiError> {
    if stored.revoked {
        return Err(ApiError::unauthorized("token has been revoked"));
    }
    if stored.expires_at.is_some_and(|e| e <= now) {
        return Err(ApiError::unauthorized("token has expired"));
    }
    Ok(())
}

/// The role `user` has in `workspace` now, if the personal access token
/// with `token_hash` is still live and they are still a member; for
/// long-lived requests (event streams) that must end when access does.
pub async fn current_role(
    db: &Store,
    token_hash: String,
    user: UserId,
    workspace: WorkspaceId,
) -> Result<Option<Role>, ApiError> {
    db.read(move |conn| -> Result<_, ApiError> {
        let Some(stored) = tokens::find_personal(conn, &token_hash)? else {
            return Ok(None);
        };
        if stored.user_id != Some(user) || require_live(&stored, Timestamp::now()).is_err() {
            return Ok(None);
        }
        Ok(workspaces::role_of(conn, workspace, user)?)
    })
    .await
}

/// A task token's caller, while its task is dispatched or running and the
/// token has not expired.
async fn authenticate_task(db: &Store, token: &str) -> Result<Caller, ApiError> {
    let hash = tokens::hash(token);
    let stored = db
        .read(move |conn| tokens::find_task_token(conn, &hash))
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid token"))?;
    if !stored.task_status.is_active() {
        return Err(ApiError::unauthorized(
            "task token is no longer valid: its task has ended",
        ));
    }
    if stored.expires_at <= Timestamp::now() {
        return Err(ApiError::unauthorized("token has expired"));
    }
    Ok(Caller::Task(TaskIdentity {
        token_id: stored.id,
        task_id: stored.task_id,
        workspace_id: stored.workspace_id,
        agent_id: stored.agent_id,
    }))
}

/// Looks the token up by its hash and checks it is live.
async fn authenticate(req: &HttpRequest) -> Result<Caller, ApiError> {
    if let Some(caller) = req.extensions().get::<Caller>() {
        return Ok(caller.clone());
    }
    let token = bearer_token(req)?;
    let db = db_of(req)?;
    if tokens::is_well_formed(&token, tokens::TASK_PREFIX) {
        let caller = authenticate_task(&db, &token).await?;
        req.extensions_mut().insert(caller.clone());
        return Ok(caller);
    }
    let is_pat = tokens::is_well_formed(&token, tokens::PAT_PREFIX);
    if !is_pat && !tokens::is_well_formed(&token, tokens::DAEMON_PREFIX) {
        return Err(ApiError::unauthorized("invalid token"));
    }
    let hash = tokens::hash(&token);
    let stored = db
        .read(move |conn| -> Result<_, ApiError> {
            let found = if is_pat {
                tokens::find_personal(conn, &hash)?
            } else {
                tokens::find_daemon(conn, &hash)?
            };
            Ok(found)
        })
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid token"))?;
    let now = Timestamp::now();
    require_live(&stored, now)?;

    let caller = match (
        is_pat,
        stored.user_id,
        stored.workspace_id,
        stored.daemon_id,
    ) {
        (true, Some(user_id), _, _) => {
            let stale = now - Duration::seconds(TOUCH_INTERVAL_SECS);
            if stored.last_used_at.is_none_or(|t| t < stale) {
                let id = stored.id;
                // bookkeeping only: a failure here must not fail the request
                if let Err(e) = db
                    .write(move |tx| tokens::touch_personal(tx, id, now))
                    .await
                {
                    log::warn!("could not record token use: {e}");
                }
            }
            Caller::User { user_id }
        }
        (false, minted_by, Some(workspace_id), Some(daemon_id)) => Caller::Daemon(DaemonIdentity {
            token_id: stored.id,
            workspace_id,
            daemon_id,
            minted_by,
        }),
        _ => return Err(ApiError::internal("token row without owner")),
    };
    req.extensions_mut().insert(caller.clone());
    Ok(caller)
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Extracted<Caller>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(&req).await })
    }
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Extracted<AuthUser>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            match authenticate(&req).await? {
                Caller::User { user_id } => Ok(AuthUser { user_id }),
                Caller::Daemon(_) => Err(ApiError::unauthorized(
                    "this route needs a personal access token, not a daemon token",
                )),
                Caller::Task(_) => Err(ApiError::unauthorized(
                    "this route needs a personal access token, not a task token",
                )),
            }
        })
    }
}

#[derive(Deserialize)]
struct WorkspaceQuery {
    workspace_id: Option<String>,
}

/// A header's value, trimmed; `None` when absent, `Err(())` when it is
/// not text.
fn header_text(req: &HttpRequest, name: &str) -> Result<Option<String>, ()> {
    req.headers()
        .get(name)
        .map(|v| v.to_str().map(|v| v.trim().to_string()).map_err(|_| ()))
        .transpose()
}

/// The id of the workspace with `slug` among those `user` belongs to: a
/// slug of a workspace they are not in is as unknown as one that does not
/// exist, so slugs cannot be probed.
async fn member_workspace_by_slug(
    db: &Store,
    user: UserId,
    slug: String,
) -> Result<WorkspaceId, ApiError> {
    db.read(move |conn| -> Result<_, ApiError> {
        let mine = workspaces::list_for_user(conn, user)?;
        Ok(mine.into_iter().find(|w| w.slug == slug).map(|w| w.id))
    })
    .await?
    .ok_or_else(|| ApiError::not_found("workspace not found"))
}

/// The workspace a scoped request names: `X-Workspace-ID` and/or
/// `X-Workspace-Slug` (400 when they name different workspaces), else
/// `?workspace_id=`.
async fn requested_workspace(
    req: &HttpRequest,
    db: &Store,
    user: UserId,
) -> Result<WorkspaceId, ApiError> {
    let not_uuid = || ApiError::bad_request("invalid workspace_id: not a UUID");
    let by_id = match header_text(req, "x-workspace-id").map_err(|_| not_uuid())? {
        Some(v) if v.is_empty() => return Err(ApiError::bad_request("workspace_id is required")),
        Some(v) => Some(
            v.parse::<WorkspaceId>()
                .map_err(|e| ApiError::bad_request(format!("invalid workspace_id: {e}")))?,
        ),
        None => None,
    };
    let by_slug = match header_text(req, "x-workspace-slug") {
        Ok(Some(slug)) if !slug.is_empty() => Some(member_workspace_by_slug(db, user, slug).await?),
        Ok(_) => None,
        // no slug is spelled with bytes a header cannot carry as text
        Err(()) => return Err(ApiError::not_found("workspace not found")),
    };
    match (by_id, by_slug) {
        (Some(id), Some(slug)) if id != slug => Err(ApiError::bad_request(
            "X-Workspace-ID and X-Workspace-Slug name different workspaces",
        )),
        (Some(id), _) | (None, Some(id)) => Ok(id),
        (None, None) => {
            let raw = web::Query::<WorkspaceQuery>::from_query(req.query_string())
                .ok()
                .and_then(|q| q.into_inner().workspace_id)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ApiError::bad_request("workspace_id is required"))?;
            raw.parse()
                .map_err(|e| ApiError::bad_request(format!("invalid workspace_id: {e}")))
        }
    }
}

/// The caller's role in `workspace`; 404 `workspace not found` when they are
/// not a member (the same answer as for a workspace that does not exist).
pub async fn require_member(
    db: &Store,
    user: UserId,
    workspace: WorkspaceId,
) -> Result<Role, ApiError> {
    db.read(move |conn| crate::access::member_role(conn, workspace, user))
        .await
}

impl FromRequest for WorkspaceAccess {
    type Error = ApiError;
    type Future = Extracted<WorkspaceAccess>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let user = AuthUser::from_request(&req, payload);
        Box::pin(async move {
            let AuthUser { user_id } = user.await?;
            let db = db_of(&req)?;
            let workspace_id = requested_workspace(&req, &db, user_id).await?;
            let role = require_member(&db, user_id, workspace_id).await?;
            Ok(WorkspaceAccess {
                user_id,
                workspace_id,
                role,
            })
        })
    }
}
