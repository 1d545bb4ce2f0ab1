//! Workspaces, their members and the daemon tokens minted for them.
//!
//! Member rules: owners and admins manage members; people join by accepting
//! an invitation (`api::invitations`); only an owner may grant the owner
//! role or change or remove another owner; anyone may leave; a workspace
//! always keeps at least one owner.

use crate::store::Conn;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{invitations, required, text};
use crate::access::member_role;
use crate::auth::{require_member, AuthUser, DAEMON_TOKEN_LIFETIME_DAYS};
use crate::domain::{MemberId, Role, Timestamp, UserId, WorkspaceId};
use crate::error::ApiError;
use crate::events::EventBus;
use crate::store::{tokens, workspaces, Store};

/// Daemon tokens a member may hold live (not revoked, not expired) in one
/// workspace: one per machine and profile is plenty.
pub const MAX_LIVE_DAEMON_TOKENS: i64 = 100;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/workspaces", web::get().to(list))
        .route("/workspaces", web::post().to(create))
        .route("/workspaces/{id}", web::get().to(get))
        .route("/workspaces/{id}", web::patch().to(update))
        .route("/workspaces/{id}", web::put().to(update))
        .route("/workspaces/{id}/members", web::get().to(list_members))
        .route(
            "/workspaces/{id}/members",
            web::post().to(invitations::invite),
        )
        .route(
            "/workspaces/{id}/members/{member_id}",
            web::patch().to(change_role),
        )
        .route(
            "/workspaces/{id}/members/{member_id}",
            web::put().to(change_role),
        )
        .route(
            "/workspaces/{id}/members/{member_id}",
            web::delete().to(remove_member),
        )
        .route(
            "/workspaces/{id}/daemon-tokens",
            web::post().to(create_daemon_token),
        );
}

async fn list(db: web::Data<Store>, caller: AuthUser) -> Result<HttpResponse, ApiError> {
    let rows = db
        .read(move |conn| workspaces::list_for_user(conn, caller.user_id))
        .await?;
    Ok(HttpResponse::Ok().json(rows))
}

#[derive(Deserialize)]
struct CreateWorkspace {
    name: Option<String>,
    slug: Option<String>,
    description: Option<String>,
}

fn valid_slug(slug: &str) -> Result<String, ApiError> {
    let slug = slug.trim();
    let ok = !slug.is_empty()
        && slug.len() <= 64
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if ok {
        Ok(slug.to_string())
    } else {
        Err(ApiError::bad_request(
            "invalid slug: use 1-64 lower-case letters, digits and inner dashes",
        ))
    }
}

async fn create(
    db: web::Data<Store>,
    caller: AuthUser,
    body: web::Json<CreateWorkspace>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let name = required(body.name.as_deref(), "name")?;
    let slug = body.slug.as_deref().map(valid_slug).transpose()?;
    let description = text(body.description.as_deref(), "description")?;
    let workspace = db
        .write(move |tx| -> Result<_, ApiError> {
            Ok(workspaces::create(
                tx,
                &name,
                slug.as_deref(),
                &description,
                caller.user_id,
            )?)
        })
        .await?;
    Ok(HttpResponse::Created().json(workspace))
}

async fn get(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<WorkspaceId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    require_member(&db, caller.user_id, id).await?;
    let workspace = db
        .read(move |conn| workspaces::get(conn, id))
        .await?
        .ok_or_else(|| ApiError::not_found("workspace not found"))?;
    Ok(HttpResponse::Ok().json(workspace))
}

/// Highest capacity a workspace may be given (tasks at once).
pub const MAX_WORKSPACE_CAPACITY: i64 = 10_000;

/// Longest workspace description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;

/// `PATCH`/`PUT /api/workspaces/{id}` (owners/admins): `{name?,
/// description?, timezone?, max_concurrent_tasks?}`, each left as it is
/// when absent. `timezone` is an IANA zone (`UTC` by default): the days
/// and months budgets count start at its midnights, from the next usage
/// write on. `max_concurrent_tasks` (1 to 10,000, or null for none) caps
/// the workspace's tasks dispatched or running at once, checked by every
/// claim; tasks already running are left alone. Any other field is a 400,
/// so a setting agenthub does not keep is never taken for saved.
async fn update(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    hub: web::Data<crate::daemon_hub::DaemonHub>,
    caller: AuthUser,
    path: web::Path<WorkspaceId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let body = super::json_object(&body)?;
    let settings = parse_settings(&body)?;
    let (workspace, reseeded) = db
        .write(move |tx| -> Result<_, ApiError> {
            require_manager(member_role(tx, id, caller.user_id)?).map_err(|_| {
                ApiError::forbidden("only workspace owners and admins can change its settings")
            })?;
            let before = workspaces::get(tx, id)?
                .ok_or_else(|| ApiError::not_found("workspace not found"))?;
            let workspace = workspaces::update(tx, id, &settings)?
                .ok_or_else(|| ApiError::not_found("workspace not found"))?;
            // the day pages' zone days and the budgets' periods are those
            // of the new zone from now on
            let reseeded = if workspace.timezone != before.timezone {
                let zone = workspace.timezone.parse().unwrap_or(chrono_tz::UTC);
                crate::store::usage::set_day_zone(tx, id, zone)?;
                Some(super::budgets::reseed(tx, id)?)
            } else {
                None
            };
            Ok((workspace, reseeded))
        })
        .await?;
    if let Some(reseeded) = reseeded {
        reseeded.publish(&events, &hub);
    }
    Ok(HttpResponse::Ok().json(workspace))
}

fn parse_settings(body: &serde_json::Value) -> Result<workspaces::Settings, ApiError> {
    let object = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    if let Some(other) = object.keys().find(|k| {
        !["name", "description", "timezone", "max_concurrent_tasks"].contains(&k.as_str())
    }) {
        return Err(ApiError::bad_request(format!(
            "{other} is not a workspace setting (name, description, timezone, max_concurrent_tasks)"
        )));
    }
    let field = |key: &str| -> Result<Option<String>, ApiError> {
        match object.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
        }
    };
    let name = field("name")?
        .map(|n| {
            let n = required(Some(&n), "name")?;
            super::at_most(&n, "name", super::MAX_SHORT_TEXT)?;
            Ok::<_, ApiError>(n)
        })
        .transpose()?;
    let description = field("description")?
        .map(|d| {
            let d = text(Some(&d), "description")?;
            super::at_most(&d, "description", MAX_DESCRIPTION_BYTES)?;
            Ok::<_, ApiError>(d)
        })
        .transpose()?;
    let timezone = field("timezone")?
        .map(|z| {
            let z = required(Some(&z), "timezone")?;
            // the zone's canonical spelling; UTC for its aliases
            Ok::<_, ApiError>(
                super::usage::zone(Some(&z))?
                    .map_or_else(|| "UTC".to_string(), |tz| tz.name().to_string()),
            )
        })
        .transpose()?;
    let max_concurrent_tasks = object
        .get("max_concurrent_tasks")
        .map(|v| super::capacity(v, "max_concurrent_tasks", MAX_WORKSPACE_CAPACITY))
        .transpose()?;
    Ok(workspaces::Settings {
        name,
        description,
        timezone,
        max_concurrent_tasks,
    })
}

async fn list_members(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<WorkspaceId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    require_member(&db, caller.user_id, id).await?;
    let rows = db
        .read(move |conn| workspaces::list_members(conn, id))
        .await?;
    Ok(HttpResponse::Ok().json(rows))
}

pub(super) fn require_manager(role: Role) -> Result<(), ApiError> {
    if role.is_manager() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only workspace owners and admins can manage members",
        ))
    }
}

pub(super) fn parse_role(role: Option<&str>, default: Option<Role>) -> Result<Role, ApiError> {
    match role.map(str::trim) {
        Some(r) => r.parse().map_err(ApiError::BadRequest),
        None => default.ok_or_else(|| ApiError::bad_request("role is required")),
    }
}

#[derive(Deserialize)]
struct ChangeRole {
    role: Option<String>,
}

async fn change_role(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: AuthUser,
    path: web::Path<(WorkspaceId, MemberId)>,
    body: web::Json<ChangeRole>,
) -> Result<HttpResponse, ApiError> {
    let (workspace, member_id) = path.into_inner();
    let body = body.into_inner();
    let member = db
        .write(move |tx| -> Result<_, ApiError> {
            // the roles checked below, and the last-owner rule, are rules
            // over the workspace's rows
            workspaces::lock(tx, workspace)?;
            let caller_role = member_role(tx, workspace, caller.user_id)?;
            require_manager(caller_role)?;
            let role = parse_role(body.role.as_deref(), None)?;
            let member = workspaces::get_member(tx, workspace, member_id)?
                .ok_or_else(|| ApiError::not_found("member not found"))?;
            if (member.role == Role::Owner || role == Role::Owner) && caller_role != Role::Owner {
                return Err(ApiError::forbidden(
                    "only an owner can grant the owner role or change an owner",
                ));
            }
            if member.role == Role::Owner
                && role != Role::Owner
                && workspaces::count_owners(tx, workspace)? <= 1
            {
                return Err(ApiError::conflict(
                    "cannot demote the last owner of a workspace",
                ));
            }
            workspaces::set_role(tx, member.id, role)?;
            workspaces::get_member(tx, workspace, member_id)?
                .ok_or_else(|| ApiError::internal("updated member vanished"))
        })
        .await?;
    // open event streams pick up the new role (and what it may read)
    events.access_changed();
    Ok(HttpResponse::Ok().json(member))
}

async fn remove_member(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: AuthUser,
    path: web::Path<(WorkspaceId, MemberId)>,
) -> Result<HttpResponse, ApiError> {
    let (workspace, member_id) = path.into_inner();
    db.write(move |tx| -> Result<_, ApiError> {
        workspaces::lock(tx, workspace)?;
        let caller_role = member_role(tx, workspace, caller.user_id)?;
        let member = workspaces::get_member(tx, workspace, member_id)?
            .ok_or_else(|| ApiError::not_found("member not found"))?;
        let leaving = member.user_id == caller.user_id;
        if !leaving {
            require_manager(caller_role)?;
            if member.role == Role::Owner && caller_role != Role::Owner {
                return Err(ApiError::forbidden("only an owner can remove an owner"));
            }
        }
        if member.role == Role::Owner && workspaces::count_owners(tx, workspace)? <= 1 {
            return Err(ApiError::conflict(
                "cannot remove the last owner of a workspace",
            ));
        }
        Ok(workspaces::remove_member(tx, &member)?)
    })
    .await?;
    // the removed member's open event streams end
    events.access_changed();
    Ok(super::ok())
}

/// Refuses a daemon token that would pose as another member's machine (the
/// workspace has runtimes of `daemon_id` owned by someone else, or by no
/// one any more), or one past [`MAX_LIVE_DAEMON_TOKENS`] of `user`'s.
fn may_mint(
    tx: &Conn<'_>,
    workspace: WorkspaceId,
    daemon_id: &str,
    user: UserId,
) -> Result<(), ApiError> {
    if crate::store::runtimes::daemon_owned_by_other(tx, workspace, daemon_id, user)? {
        return Err(super::daemon::daemon_taken(daemon_id));
    }
    if tokens::count_live_daemon(tx, workspace, user)? >= MAX_LIVE_DAEMON_TOKENS {
        return Err(ApiError::conflict(format!(
            "you already have {MAX_LIVE_DAEMON_TOKENS} active daemon tokens in this workspace"
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
struct CreateDaemonToken {
    daemon_id: Option<String>,
}

#[derive(Serialize)]
struct DaemonToken {
    /// Shown once; only its hash is stored.
    token: String,
    workspace_id: WorkspaceId,
    daemon_id: String,
    expires_at: Timestamp,
}

/// Any member may mint a token for a daemon on their own machine; the token
/// reaches only this workspace and dies with the membership.
async fn create_daemon_token(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<WorkspaceId>,
    body: web::Json<CreateDaemonToken>,
) -> Result<HttpResponse, ApiError> {
    let workspace = path.into_inner();
    let daemon_id = body.into_inner().daemon_id;
    let expires_at = Timestamp::now() + chrono::Duration::days(DAEMON_TOKEN_LIFETIME_DAYS);
    let (token, daemon_id) = db
        .write(move |tx| -> Result<_, ApiError> {
            // who owns a daemon_id and how many tokens a member holds are
            // rules over the workspace's rows
            workspaces::lock(tx, workspace)?;
            member_role(tx, workspace, caller.user_id)?;
            let daemon_id = required(daemon_id.as_deref(), "daemon_id")?;
            may_mint(tx, workspace, &daemon_id, caller.user_id)?;
            let token =
                tokens::create_daemon(tx, workspace, &daemon_id, caller.user_id, expires_at)?;
            Ok((token, daemon_id))
        })
        .await?;
    Ok(HttpResponse::Created().json(DaemonToken {
        token,
        workspace_id: workspace,
        daemon_id,
        expires_at,
    }))
}
