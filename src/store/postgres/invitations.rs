//! `invitation` rows: a role in a workspace offered to an email address.
//!
//! Addresses compare case-insensitively (SQLite: the NOCASE column) as
//! `lower(email)`, the expression of the schema's indexes; `lower` of a
//! parameter is taken in the column's "C" collation (ASCII only, as
//! NOCASE), whatever the database's default collation.

use postgres::Row;

use super::Client;

use crate::domain::{InvitationId, Timestamp, UserId, WorkspaceId};
use crate::store::invitations::*;
use crate::store::Error;

const SELECT: &str = "SELECT i.id, i.workspace_id, w.name, i.email, i.role, i.status, i.invited_by,
                             i.created_at, i.expires_at
                      FROM invitation i JOIN workspace w ON w.id = i.workspace_id";

fn from_row(row: &Row) -> Result<Invitation, postgres::Error> {
    let expires_at: Timestamp = row.try_get(8)?;
    Ok(Invitation {
        id: row.try_get(0)?,
        workspace_id: row.try_get(1)?,
        workspace_name: row.try_get(2)?,
        email: row.try_get(3)?,
        role: row.try_get(4)?,
        status: row.try_get(5)?,
        invited_by: row.try_get(6)?,
        created_at: row.try_get(7)?,
        expired: expires_at <= Timestamp::now(),
        expires_at,
    })
}

pub fn get(conn: &mut Client, id: InvitationId) -> Result<Option<Invitation>, postgres::Error> {
    conn.query_opt(&format!("{SELECT} WHERE i.id = $1"), &[&id])?
        .as_ref()
        .map(from_row)
        .transpose()
}

pub fn get_for_user(
    conn: &mut Client,
    id: InvitationId,
    user: UserId,
) -> Result<Option<Invitation>, postgres::Error> {
    conn.query_opt(
        &format!(
            r#"{SELECT} JOIN "user" u ON lower(u.email) = lower(i.email)
               WHERE i.id = $1 AND u.id = $2"#
        ),
        &[&id, &user],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub fn find_pending(
    conn: &mut Client,
    workspace: WorkspaceId,
    email: &str,
) -> Result<Option<Invitation>, postgres::Error> {
    conn.query_opt(
        &format!(
            r#"{SELECT} WHERE i.workspace_id = $1 AND lower(i.email) = lower($2::text COLLATE "C")
                 AND i.status = 'pending'"#
        ),
        &[&workspace, &email],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub fn count_open(conn: &mut Client, workspace: WorkspaceId) -> Result<i64, postgres::Error> {
    conn.query_one(
        "SELECT count(*) FROM invitation
         WHERE workspace_id = $1 AND status = 'pending' AND expires_at > $2",
        &[&workspace, &Timestamp::now()],
    )?
    .try_get(0)
}

pub fn list_open_for_workspace(
    conn: &mut Client,
    workspace: WorkspaceId,
) -> Result<Vec<Invitation>, postgres::Error> {
    conn.query(
        &format!(
            "{SELECT} WHERE i.workspace_id = $1 AND i.status = 'pending' AND i.expires_at > $2
             ORDER BY i.created_at DESC, i.seq DESC"
        ),
        &[&workspace, &Timestamp::now()],
    )?
    .iter()
    .map(from_row)
    .collect()
}

pub fn list_open_for_user(
    conn: &mut Client,
    user: UserId,
) -> Result<Vec<Invitation>, postgres::Error> {
    conn.query(
        &format!(
            r#"{SELECT} JOIN "user" u ON lower(u.email) = lower(i.email)
               WHERE u.id = $1 AND i.status = 'pending' AND i.expires_at > $2
               ORDER BY i.created_at DESC, i.seq DESC"#
        ),
        &[&user, &Timestamp::now()],
    )?
    .iter()
    .map(from_row)
    .collect()
}

/// The partial unique index (one pending invitation per workspace and
/// `lower(email)`) picks between a new row and the pending one, also
/// between concurrent invites: the `ON CONFLICT` target names its
/// expression and predicate exactly, and waits for a concurrent insert of
/// the address to settle instead of failing.
pub fn offer(
    conn: &mut Client,
    offer: &Offer<'_>,
    may_change_owner: bool,
) -> Result<Option<Invitation>, Error> {
    let row = conn.query_opt(
        "INSERT INTO invitation (id, workspace_id, email, role, invited_by, created_at,
             expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (workspace_id, (lower(email))) WHERE status = 'pending' DO UPDATE SET
             role = excluded.role,
             invited_by = excluded.invited_by,
             expires_at = excluded.expires_at
         WHERE invitation.role <> 'owner' OR $8::boolean
         RETURNING id",
        &[
            &InvitationId::new(),
            &offer.workspace,
            &offer.email,
            &offer.role,
            &offer.invited_by,
            &Timestamp::now(),
            &offer.expires_at,
            &may_change_owner,
        ],
    )?;
    let Some(row) = row else {
        return Ok(None);
    };
    let id: InvitationId = row.try_get(0)?;
    let sent = get(conn, id)?.ok_or_else(|| Error::internal("offered invitation vanished"))?;
    Ok(Some(sent))
}

pub fn answer(
    conn: &mut Client,
    id: InvitationId,
    status: InvitationStatus,
) -> Result<bool, postgres::Error> {
    let changed = conn.execute(
        "UPDATE invitation SET status = $2, answered_at = $3 WHERE id = $1 AND status = 'pending'",
        &[&id, &status, &Timestamp::now()],
    )?;
    Ok(changed > 0)
}

pub fn revoke_sent_by(
    conn: &mut Client,
    workspace: WorkspaceId,
    user: UserId,
) -> Result<(), postgres::Error> {
    conn.execute(
        "UPDATE invitation SET status = 'revoked', answered_at = $3
         WHERE workspace_id = $1 AND invited_by = $2 AND status = 'pending'",
        &[&workspace, &user, &Timestamp::now()],
    )?;
    Ok(())
}
