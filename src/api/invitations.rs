//! Membership by invitation. An owner or admin invites an email address
//! (`POST /api/workspaces/{id}/members`); the user with that address sees
//! the invitation under `GET /api/invitations` and accepts or declines it.
//!
//! The invite answers the same whether or not a user has that address, so
//! it tells nothing about who has an account. An invitation is visible to
//! its workspace's owners and admins and to the invited user only; anyone
//! else gets the same 404 as for an id that does not exist.

use crate::store::Conn;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::required;
use super::workspaces::{parse_role, require_manager};
use crate::access::member_role;
use crate::admin::parse_email;
use crate::auth::AuthUser;
use crate::domain::{InvitationId, Role, Timestamp, UserId, WorkspaceId};
use crate::error::ApiError;
use crate::store::invitations::{self, Invitation, InvitationStatus};
use crate::store::{workspaces, Store};

/// How long an invitation can be accepted.
pub const INVITATION_LIFETIME_DAYS: i64 = 14;
/// Open invitations a workspace may have at once.
pub const MAX_OPEN_INVITATIONS: i64 = 100;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/workspaces/{id}/invitations",
        web::get().to(list_for_workspace),
    )
    .route(
        "/workspaces/{id}/invitations/{invitation_id}",
        web::delete().to(revoke),
    )
    .route("/invitations", web::get().to(list_mine))
    .route("/invitations/{id}/accept", web::post().to(accept))
    .route("/invitations/{id}/decline", web::post().to(decline));
}

fn not_found() -> ApiError {
    ApiError::not_found("invitation not found")
}

/// The caller's role in `workspace`, if they manage it: 404 for
/// non-members, 403 for plain members.
fn manager_role(conn: &Conn<'_>, workspace: WorkspaceId, user: UserId) -> Result<Role, ApiError> {
    let role = member_role(conn, workspace, user)?;
    require_manager(role)?;
    Ok(role)
}

/// Refuses an invitation that can no longer be answered.
fn require_open(invitation: &Invitation) -> Result<(), ApiError> {
    let message = match invitation.status {
        InvitationStatus::Pending if invitation.expired => "invitation has expired",
        InvitationStatus::Pending => return Ok(()),
        InvitationStatus::Accepted => "invitation has already been accepted",
        InvitationStatus::Declined => "invitation has been declined",
        InvitationStatus::Revoked => "invitation has been revoked",
    };
    Err(ApiError::conflict(message))
}

#[derive(Deserialize)]
pub struct Invite {
    email: Option<String>,
    role: Option<String>,
}

/// `POST /api/workspaces/{id}/members`: invites `email` with `role`
/// (default member). Inviting an address that already has a pending
/// invitation renews that one instead of adding another.
pub async fn invite(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<WorkspaceId>,
    body: web::Json<Invite>,
) -> Result<HttpResponse, ApiError> {
    let workspace = path.into_inner();
    let body = body.into_inner();
    let email =
        parse_email(&required(body.email.as_deref(), "email")?).map_err(ApiError::BadRequest)?;
    let role = parse_role(body.role.as_deref(), Some(Role::Member))?;
    let invitation = db
        .write(move |tx| offer(tx, workspace, caller.user_id, &email, role))
        .await?;
    Ok(HttpResponse::Created().json(invitation))
}

fn offer(
    tx: &Conn<'_>,
    workspace: WorkspaceId,
    inviter: UserId,
    email: &str,
    role: Role,
) -> Result<Invitation, ApiError> {
    // the inviter's role and the cap on pending invitations are rules over
    // the workspace's rows
    workspaces::lock(tx, workspace)?;
    let inviter_role = manager_role(tx, workspace, inviter)?;
    if role == Role::Owner && inviter_role != Role::Owner {
        return Err(ApiError::forbidden("only an owner can invite an owner"));
    }
    if workspaces::has_member_with_email(tx, workspace, email)? {
        return Err(ApiError::conflict(
            "user is already a member of this workspace",
        ));
    }
    let pending = invitations::find_pending(tx, workspace, email)?;
    let owner_change =
        || ApiError::forbidden("only an owner can change an invitation to the owner role");
    let may_change_owner = inviter_role == Role::Owner;
    if pending
        .as_ref()
        .is_some_and(|p| p.role == Role::Owner && !may_change_owner)
    {
        return Err(owner_change());
    }
    let adds_one = pending.as_ref().is_none_or(|p| p.expired);
    if adds_one && invitations::count_open(tx, workspace)? >= MAX_OPEN_INVITATIONS {
        return Err(ApiError::conflict(format!(
            "a workspace can have at most {MAX_OPEN_INVITATIONS} pending invitations"
        )));
    }
    let expires_at = Timestamp::now() + chrono::Duration::days(INVITATION_LIFETIME_DAYS);
    let offer = invitations::Offer {
        workspace,
        email,
        role,
        invited_by: inviter,
        expires_at,
    };
    // an owner invitation that appeared since the look-up is refused here
    invitations::offer(tx, &offer, may_change_owner)?.ok_or_else(owner_change)
}

async fn list_for_workspace(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<WorkspaceId>,
) -> Result<HttpResponse, ApiError> {
    let workspace = path.into_inner();
    let rows = db
        .read(move |conn| -> Result<_, ApiError> {
            manager_role(conn, workspace, caller.user_id)?;
            Ok(invitations::list_open_for_workspace(conn, workspace)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(rows))
}

async fn revoke(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<(WorkspaceId, InvitationId)>,
) -> Result<HttpResponse, ApiError> {
    let (workspace, id) = path.into_inner();
    db.write(move |tx| -> Result<_, ApiError> {
        let role = manager_role(tx, workspace, caller.user_id)?;
        let invitation = invitations::get(tx, id)?
            .filter(|i| i.workspace_id == workspace)
            .ok_or_else(not_found)?;
        // an expired one may still be revoked, an answered one not
        if invitation.status != InvitationStatus::Pending {
            require_open(&invitation)?;
        }
        if invitation.role == Role::Owner && role != Role::Owner {
            return Err(ApiError::forbidden(
                "only an owner can revoke an invitation to the owner role",
            ));
        }
        if !invitations::answer(tx, id, InvitationStatus::Revoked)? {
            return Err(answered_meanwhile(tx, id));
        }
        Ok(())
    })
    .await?;
    Ok(super::ok())
}

async fn list_mine(db: web::Data<Store>, caller: AuthUser) -> Result<HttpResponse, ApiError> {
    let rows = db
        .read(move |conn| invitations::list_open_for_user(conn, caller.user_id))
        .await?;
    Ok(HttpResponse::Ok().json(rows))
}

/// Why a conditional answer changed nothing: the invitation was answered
/// by a concurrent request, which the 409 names.
fn answered_meanwhile(tx: &Conn<'_>, id: InvitationId) -> ApiError {
    let now = match invitations::get(tx, id) {
        Ok(Some(invitation)) => invitation,
        Ok(None) => return not_found(),
        Err(e) => return e.into(),
    };
    match require_open(&now) {
        Err(refusal) => refusal,
        Ok(()) => ApiError::conflict("invitation changed while the request ran; retry"),
    }
}

/// The invitation `id`, if it was sent to `user` and can still be answered.
fn open_invitation_of(
    tx: &Conn<'_>,
    id: InvitationId,
    user: UserId,
) -> Result<Invitation, ApiError> {
    let invitation = invitations::get_for_user(tx, id, user)?.ok_or_else(not_found)?;
    require_open(&invitation)?;
    Ok(invitation)
}

/// Refuses an invitation whose sender could not send it now: an invitation
/// grants what its sender may grant, so one from an admin who was removed
/// or demoted since (or an owner invitation from a former owner) lapses.
fn require_inviter_still_grants(tx: &Conn<'_>, invitation: &Invitation) -> Result<(), ApiError> {
    let role = match invitation.invited_by {
        Some(inviter) => workspaces::role_of(tx, invitation.workspace_id, inviter)?,
        None => None,
    };
    let grants = match (role, invitation.role) {
        (Some(role), Role::Owner) => role == Role::Owner,
        (Some(role), _) => role.is_manager(),
        (None, _) => false,
    };
    if grants {
        return Ok(());
    }
    Err(ApiError::conflict(
        "invitation is no longer valid: whoever sent it can no longer grant this role",
    ))
}

/// Joins the workspace with the invited role; answers the new membership.
/// The inviter's right to grant the role is checked in the same
/// transaction as the join.
async fn accept(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<InvitationId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let member = db
        .write(move |tx| -> Result<_, ApiError> {
            let invitation = open_invitation_of(tx, id, caller.user_id)?;
            // the sender's role is a rule over the workspace's rows
            workspaces::lock(tx, invitation.workspace_id)?;
            require_inviter_still_grants(tx, &invitation)?;
            // answered first, on the condition that it is still pending:
            // of concurrent accepts exactly one joins
            if !invitations::answer(tx, id, InvitationStatus::Accepted)? {
                return Err(answered_meanwhile(tx, id));
            }
            Ok(workspaces::add_member(
                tx,
                invitation.workspace_id,
                caller.user_id,
                invitation.role,
            )?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(member))
}

async fn decline(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<InvitationId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let invitation = db
        .write(move |tx| -> Result<_, ApiError> {
            open_invitation_of(tx, id, caller.user_id)?;
            if !invitations::answer(tx, id, InvitationStatus::Declined)? {
                return Err(answered_meanwhile(tx, id));
            }
            invitations::get(tx, id)?.ok_or_else(not_found)
        })
        .await?;
    Ok(HttpResponse::Ok().json(invitation))
}
