//! `invitation` rows: a role in a workspace offered to an email address.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::{InvitationId, Timestamp, UserId, WorkspaceId};
use crate::store::invitations::*;
use crate::store::Error;

const SELECT: &str = "SELECT i.id, i.workspace_id, w.name, i.email, i.role, i.status, i.invited_by,
                             i.created_at, i.expires_at
                      FROM invitation i JOIN workspace w ON w.id = i.workspace_id";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Invitation> {
    let expires_at: Timestamp = row.get(8)?;
    Ok(Invitation {
        id: row.get(0)?,
        workspace_id: row.get(1)?,
        workspace_name: row.get(2)?,
        email: row.get(3)?,
        role: row.get(4)?,
        status: row.get(5)?,
        invited_by: row.get(6)?,
        created_at: row.get(7)?,
        expired: expires_at <= Timestamp::now(),
        expires_at,
    })
}

pub fn get(conn: &Connection, id: InvitationId) -> rusqlite::Result<Option<Invitation>> {
    conn.prepare_cached(&format!("{SELECT} WHERE i.id = ?1"))?
        .query_row([id], from_row)
        .optional()
}

pub fn get_for_user(
    conn: &Connection,
    id: InvitationId,
    user: UserId,
) -> rusqlite::Result<Option<Invitation>> {
    conn.prepare_cached(&format!(
        r#"{SELECT} JOIN "user" u ON u.email = i.email WHERE i.id = ?1 AND u.id = ?2"#
    ))?
    .query_row(params![id, user], from_row)
    .optional()
}

pub fn find_pending(
    conn: &Connection,
    workspace: WorkspaceId,
    email: &str,
) -> rusqlite::Result<Option<Invitation>> {
    conn.prepare_cached(&format!(
        "{SELECT} WHERE i.workspace_id = ?1 AND i.email = ?2 AND i.status = 'pending'"
    ))?
    .query_row(params![workspace, email], from_row)
    .optional()
}

pub fn count_open(conn: &Connection, workspace: WorkspaceId) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT count(*) FROM invitation
         WHERE workspace_id = ?1 AND status = 'pending' AND expires_at > ?2",
    )?
    .query_row(params![workspace, Timestamp::now()], |r| r.get(0))
}

pub fn list_open_for_workspace(
    conn: &Connection,
    workspace: WorkspaceId,
) -> rusqlite::Result<Vec<Invitation>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE i.workspace_id = ?1 AND i.status = 'pending' AND i.expires_at > ?2
         ORDER BY i.created_at DESC, i.rowid DESC"
    ))?;
    let rows = stmt.query_map(params![workspace, Timestamp::now()], from_row)?;
    rows.collect()
}

pub fn list_open_for_user(conn: &Connection, user: UserId) -> rusqlite::Result<Vec<Invitation>> {
    let mut stmt = conn.prepare_cached(&format!(
        r#"{SELECT} JOIN "user" u ON u.email = i.email
           WHERE u.id = ?1 AND i.status = 'pending' AND i.expires_at > ?2
           ORDER BY i.created_at DESC, i.rowid DESC"#
    ))?;
    let rows = stmt.query_map(params![user, Timestamp::now()], from_row)?;
    rows.collect()
}

pub fn offer(
    conn: &Connection,
    offer: &Offer<'_>,
    may_change_owner: bool,
) -> Result<Option<Invitation>, Error> {
    // the partial UNIQUE index (one pending per address) picks between a
    // new row and the pending one, also between concurrent invites
    let id: Option<InvitationId> = conn
        .prepare_cached(
            "INSERT INTO invitation (id, workspace_id, email, role, invited_by, created_at,
                 expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (workspace_id, email) WHERE status = 'pending' DO UPDATE SET
                 role = excluded.role,
                 invited_by = excluded.invited_by,
                 expires_at = excluded.expires_at
             WHERE invitation.role <> 'owner' OR ?8
             RETURNING id",
        )?
        .query_row(
            params![
                InvitationId::new(),
                offer.workspace,
                offer.email,
                offer.role,
                offer.invited_by,
                Timestamp::now(),
                offer.expires_at,
                may_change_owner
            ],
            |r| r.get(0),
        )
        .optional()?;
    let Some(id) = id else {
        return Ok(None);
    };
    let sent = get(conn, id)?.ok_or_else(|| Error::internal("offered invitation vanished"))?;
    Ok(Some(sent))
}

pub fn answer(
    conn: &Connection,
    id: InvitationId,
    status: InvitationStatus,
) -> rusqlite::Result<bool> {
    let changed = conn.prepare_cached("UPDATE invitation SET status = ?2, answered_at = ?3 WHERE id = ?1 AND status = 'pending'")?.execute(params![id, status, Timestamp::now()])?;
    Ok(changed > 0)
}

pub fn revoke_sent_by(
    conn: &Connection,
    workspace: WorkspaceId,
    user: UserId,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE invitation SET status = 'revoked', answered_at = ?3
         WHERE workspace_id = ?1 AND invited_by = ?2 AND status = 'pending'",
    )?
    .execute(params![workspace, user, Timestamp::now()])?;
    Ok(())
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::domain::Role;
    use crate::store::sqlite::{scratch_connection, scratch_database};

    /// A migrated file with a workspace owned by a user, and a trigger
    /// standing in for another transaction that invites the same address
    /// with `role` just before the next invite of it lands.
    fn open(role: &str) -> (tempfile::TempDir, Connection, WorkspaceId, UserId) {
        let (dir, path) = scratch_database();
        let conn = scratch_connection(&path);
        let user = super::super::users::insert(&conn, "ada@example.com", "Ada")
            .expect("user")
            .id;
        let ws = crate::store::workspaces::create(
            &crate::store::Conn::sqlite(&conn),
            "Lab",
            None,
            "",
            user,
        )
        .expect("workspace")
        .id;
        conn.execute_batch(&format!(
            "CREATE TEMP TRIGGER concurrent_invite BEFORE INSERT ON main.invitation
             WHEN NEW.role = 'admin'
             BEGIN
                 INSERT INTO invitation (id, workspace_id, email, role, invited_by, created_at,
                     expires_at)
                 VALUES ('00000000-0000-4000-8000-000000000001', NEW.workspace_id,
                         upper(NEW.email), '{role}', NEW.invited_by, NEW.created_at,
                         NEW.expires_at);
             END;"
        ))
        .expect("trigger");
        (dir, conn, ws, user)
    }

    fn pending(conn: &Connection) -> Vec<(String, String)> {
        conn.prepare_cached("SELECT id, role FROM invitation WHERE status = 'pending'")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .expect("pending")
    }

    fn admin_offer(ws: WorkspaceId, user: UserId, expires_at: Timestamp) -> Offer<'static> {
        Offer {
            workspace: ws,
            email: "bob@example.com",
            role: Role::Admin,
            invited_by: user,
            expires_at,
        }
    }

    #[test]
    fn an_invite_racing_another_of_the_address_renews_it() {
        let (_dir, conn, ws, user) = open("member");
        let expires_at = Timestamp::now() + chrono::Duration::days(1);
        let sent = offer(&conn, &admin_offer(ws, user, expires_at), false)
            .expect("offer")
            .expect("renewed");
        assert_eq!(sent.id.to_string(), "00000000-0000-4000-8000-000000000001");
        assert_eq!(sent.role, Role::Admin);
        assert_eq!(pending(&conn), [(sent.id.to_string(), "admin".to_string())]);
    }

    #[test]
    fn an_owner_invitation_that_appeared_meanwhile_is_left_to_owners() {
        let (_dir, conn, ws, user) = open("owner");
        let expires_at = Timestamp::now() + chrono::Duration::days(1);
        let sent = offer(&conn, &admin_offer(ws, user, expires_at), false).expect("offer");
        assert!(sent.is_none(), "{sent:?}");
        assert_eq!(
            pending(&conn),
            [(
                "00000000-0000-4000-8000-000000000001".to_string(),
                "owner".to_string()
            )]
        );
    }
}
