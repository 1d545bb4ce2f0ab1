//! `invitation` rows: a role in a workspace offered to an email address.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::{Id, Role};
#[allow(unused_imports)]
use crate::store::invitations::*;
use crate::store::Error;
use crate::store::{api_time, now};

impl ToSql for InvitationStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for InvitationStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_str()? {
            "pending" => Ok(InvitationStatus::Pending),
            "accepted" => Ok(InvitationStatus::Accepted),
            "declined" => Ok(InvitationStatus::Declined),
            "revoked" => Ok(InvitationStatus::Revoked),
            other => Err(FromSqlError::Other(
                format!("invalid invitation status {other:?}").into(),
            )),
        }
    }
}

const SELECT: &str = "SELECT i.id, i.workspace_id, w.name, i.email, i.role, i.status, i.invited_by,
                             i.created_at, i.expires_at
                      FROM invitation i JOIN workspace w ON w.id = i.workspace_id";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Invitation> {
    let expires_at: String = row.get(8)?;
    Ok(Invitation {
        id: row.get(0)?,
        workspace_id: row.get(1)?,
        workspace_name: row.get(2)?,
        email: row.get(3)?,
        role: row.get(4)?,
        status: row.get(5)?,
        invited_by: row.get(6)?,
        created_at: api_time(&row.get::<_, String>(7)?),
        expired: expires_at <= now(),
        expires_at: api_time(&expires_at),
    })
}

pub fn get(conn: &Connection, id: Id) -> rusqlite::Result<Option<Invitation>> {
    conn.query_row(&format!("{SELECT} WHERE i.id = ?1"), [id], from_row)
        .optional()
}

pub fn get_for_user(conn: &Connection, id: Id, user: Id) -> rusqlite::Result<Option<Invitation>> {
    conn.query_row(
        &format!(r#"{SELECT} JOIN "user" u ON u.email = i.email WHERE i.id = ?1 AND u.id = ?2"#),
        [id, user],
        from_row,
    )
    .optional()
}

pub fn find_pending(
    conn: &Connection,
    workspace: Id,
    email: &str,
) -> rusqlite::Result<Option<Invitation>> {
    conn.query_row(
        &format!("{SELECT} WHERE i.workspace_id = ?1 AND i.email = ?2 AND i.status = 'pending'"),
        params![workspace, email],
        from_row,
    )
    .optional()
}

pub fn count_open(conn: &Connection, workspace: Id) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM invitation
         WHERE workspace_id = ?1 AND status = 'pending' AND expires_at > ?2",
        params![workspace, now()],
        |r| r.get(0),
    )
}

pub fn list_open_for_workspace(
    conn: &Connection,
    workspace: Id,
) -> rusqlite::Result<Vec<Invitation>> {
    let mut stmt = conn.prepare(&format!(
        "{SELECT} WHERE i.workspace_id = ?1 AND i.status = 'pending' AND i.expires_at > ?2
         ORDER BY i.created_at DESC, i.rowid DESC"
    ))?;
    let rows = stmt.query_map(params![workspace, now()], from_row)?;
    rows.collect()
}

pub fn list_open_for_user(conn: &Connection, user: Id) -> rusqlite::Result<Vec<Invitation>> {
    let mut stmt = conn.prepare(&format!(
        r#"{SELECT} JOIN "user" u ON u.email = i.email
           WHERE u.id = ?1 AND i.status = 'pending' AND i.expires_at > ?2
           ORDER BY i.created_at DESC, i.rowid DESC"#
    ))?;
    let rows = stmt.query_map(params![user, now()], from_row)?;
    rows.collect()
}

pub fn insert(
    conn: &Connection,
    workspace: Id,
    email: &str,
    role: Role,
    invited_by: Id,
    expires_at: &str,
) -> Result<Invitation, Error> {
    let id = Id::new();
    conn.execute(
        "INSERT INTO invitation (id, workspace_id, email, role, invited_by, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![id, workspace, email, role, invited_by, now(), expires_at],
    )?;
    get(conn, id)?.ok_or_else(|| Error::internal("inserted invitation vanished"))
}

pub fn renew(
    conn: &Connection,
    id: Id,
    role: Role,
    invited_by: Id,
    expires_at: &str,
) -> Result<Invitation, Error> {
    conn.execute(
        "UPDATE invitation SET role = ?2, invited_by = ?3, expires_at = ?4
         WHERE id = ?1 AND status = 'pending'",
        params![id, role, invited_by, expires_at],
    )?;
    get(conn, id)?.ok_or_else(|| Error::internal("renewed invitation vanished"))
}

pub fn answer(conn: &Connection, id: Id, status: InvitationStatus) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE invitation SET status = ?2, answered_at = ?3 WHERE id = ?1 AND status = 'pending'",
        params![id, status, now()],
    )?;
    Ok(())
}

pub fn revoke_sent_by(conn: &Connection, workspace: Id, user: Id) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE invitation SET status = 'revoked', answered_at = ?3
         WHERE workspace_id = ?1 AND invited_by = ?2 AND status = 'pending'",
        params![workspace, user, now()],
    )?;
    Ok(())
}
