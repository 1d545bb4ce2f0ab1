//! `invitation` rows: a role in a workspace offered to an email address.

pub use crate::domain::InvitationStatus;
use crate::domain::{InvitationId, Role, Timestamp, UserId, WorkspaceId};
use serde::Serialize;

use super::{dispatch, Conn, Result};

#[derive(Debug, Clone, Serialize)]
pub struct Invitation {
    pub id: InvitationId,
    pub workspace_id: WorkspaceId,
    /// So the invitee, not yet a member, knows what they are asked to join.
    pub workspace_name: String,
    pub email: String,
    pub role: Role,
    pub status: InvitationStatus,
    /// The inviting user; null once that user is gone.
    pub invited_by: Option<UserId>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    #[serde(skip)]
    pub expired: bool,
}

pub fn get(conn: &Conn<'_>, id: InvitationId) -> Result<Option<Invitation>> {
    dispatch!(conn, invitations::get(id))
}

/// The invitation `id` if it was sent to `user`'s email address.
pub fn get_for_user(conn: &Conn<'_>, id: InvitationId, user: UserId) -> Result<Option<Invitation>> {
    dispatch!(conn, invitations::get_for_user(id, user))
}

/// The pending invitation of `email` to `workspace`, expired or not.
pub fn find_pending(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    email: &str,
) -> Result<Option<Invitation>> {
    dispatch!(conn, invitations::find_pending(workspace, email))
}

/// Pending invitations of `workspace` that can still be accepted.
pub fn count_open(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<i64> {
    dispatch!(conn, invitations::count_open(workspace))
}

/// Invitations of `workspace` that can still be accepted, newest first.
pub fn list_open_for_workspace(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<Vec<Invitation>> {
    dispatch!(conn, invitations::list_open_for_workspace(workspace))
}

/// Invitations sent to `user`'s email address that they can still accept,
/// newest first.
pub fn list_open_for_user(conn: &Conn<'_>, user: UserId) -> Result<Vec<Invitation>> {
    dispatch!(conn, invitations::list_open_for_user(user))
}

/// An invitation to send: `role` in `workspace` for `email`, from
/// `invited_by`, open until `expires_at`.
pub struct Offer<'a> {
    pub workspace: WorkspaceId,
    pub email: &'a str,
    pub role: Role,
    pub invited_by: UserId,
    pub expires_at: Timestamp,
}

/// Sends an invitation: a new pending one, or — when the address already
/// has one pending in the workspace (expired or not) — that one renewed:
/// same id, the new role, inviter and expiry. The schema's one-pending
/// UNIQUE index decides which, so concurrent invites of one address leave
/// one pending invitation. `None`, changing nothing, when the pending one
/// is for the owner role and `may_change_owner` is false.
pub fn offer(
    conn: &Conn<'_>,
    offer: &Offer<'_>,
    may_change_owner: bool,
) -> Result<Option<Invitation>> {
    dispatch!(conn, invitations::offer(offer, may_change_owner))
}

/// Closes a pending invitation as accepted, declined or revoked; `false`,
/// changing nothing, when it is not pending (any more): the condition is
/// part of the write, so of concurrent answers exactly one counts.
pub fn answer(conn: &Conn<'_>, id: InvitationId, status: InvitationStatus) -> Result<bool> {
    dispatch!(conn, invitations::answer(id, status))
}

/// Revokes the pending invitations `user` sent for `workspace`, when they
/// leave it: what they offered was theirs to offer as a member.
pub fn revoke_sent_by(conn: &Conn<'_>, workspace: WorkspaceId, user: UserId) -> Result<()> {
    dispatch!(conn, invitations::revoke_sent_by(workspace, user))
}
