//! `workspace` and `member` rows.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::{MemberId, Role, Timestamp, UserId, WorkspaceId};
use crate::store::workspaces::*;
use crate::store::Error;

const WORKSPACE_COLUMNS: &str =
    "w.id, w.name, w.slug, w.description, w.created_at, w.updated_at, w.timezone, \
     w.max_concurrent_tasks";
const MEMBER_COLUMNS: &str =
    "m.id, m.workspace_id, m.user_id, m.role, u.name, u.email, m.created_at";

fn workspace_from_row(row: &Row<'_>) -> rusqlite::Result<Workspace> {
    Ok(Workspace {
        id: row.get(0)?,
        name: row.get(1)?,
        slug: row.get(2)?,
        description: row.get(3)?,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
        timezone: row.get(6)?,
        max_concurrent_tasks: row.get(7)?,
    })
}

fn member_from_row(row: &Row<'_>) -> rusqlite::Result<Member> {
    Ok(Member {
        id: row.get(0)?,
        workspace_id: row.get(1)?,
        user_id: row.get(2)?,
        role: row.get(3)?,
        name: row.get(4)?,
        email: row.get(5)?,
        created_at: row.get(6)?,
    })
}

/// Inserts the workspace row unless `slug` is taken; whether it did. The
/// UNIQUE slug decides, also between concurrent creations.
pub fn insert_with_slug(
    conn: &Connection,
    id: WorkspaceId,
    name: &str,
    slug: &str,
    description: &str,
) -> rusqlite::Result<bool> {
    let added = conn
        .prepare_cached(
            "INSERT INTO workspace (id, name, slug, description, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (slug) DO NOTHING",
        )?
        .execute(params![id, name, slug, description, Timestamp::now()])?;
    Ok(added > 0)
}

/// Whether a workspace has `slug`.
pub fn slug_taken(conn: &Connection, slug: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM workspace WHERE slug = ?1")?
        .exists([slug])
}

/// Nothing to take: a SQLite write transaction holds the whole file.
pub fn lock(_conn: &Connection, _id: WorkspaceId) -> rusqlite::Result<()> {
    Ok(())
}

pub fn get(conn: &Connection, id: WorkspaceId) -> rusqlite::Result<Option<Workspace>> {
    conn.prepare_cached(&format!(
        "SELECT {WORKSPACE_COLUMNS} FROM workspace w WHERE w.id = ?1"
    ))?
    .query_row([id], workspace_from_row)
    .optional()
}

pub fn update(
    conn: &Connection,
    id: WorkspaceId,
    settings: &Settings,
    at: Timestamp,
) -> rusqlite::Result<Option<Workspace>> {
    // RETURNING names the table's columns unqualified
    let columns = WORKSPACE_COLUMNS.replace("w.", "");
    conn.prepare_cached(&format!(
        "UPDATE workspace SET name = coalesce(?2, name),
             description = coalesce(?3, description),
             timezone = coalesce(?4, timezone), updated_at = ?5,
                 max_concurrent_tasks = CASE WHEN ?6 THEN ?7 ELSE max_concurrent_tasks END
         WHERE id = ?1
         RETURNING {columns}"
    ))?
    .query_row(
        params![
            id,
            settings.name,
            settings.description,
            settings.timezone,
            at,
            settings.max_concurrent_tasks.is_some(),
            settings.max_concurrent_tasks.flatten()
        ],
        workspace_from_row,
    )
    .optional()
}

pub fn list_for_user(conn: &Connection, user: UserId) -> rusqlite::Result<Vec<Workspace>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {WORKSPACE_COLUMNS} FROM workspace w
         JOIN member m ON m.workspace_id = w.id
         WHERE m.user_id = ?1
         ORDER BY w.created_at, w.rowid"
    ))?;
    let rows = stmt.query_map([user], workspace_from_row)?;
    rows.collect()
}

/// `_lock` asks for nothing here: the one writer already orders writes.
pub fn role_of(
    conn: &Connection,
    workspace: WorkspaceId,
    user: UserId,
    _lock: bool,
) -> rusqlite::Result<Option<Role>> {
    conn.prepare_cached("SELECT role FROM member WHERE workspace_id = ?1 AND user_id = ?2")?
        .query_row(params![workspace, user], |r| r.get(0))
        .optional()
}

pub fn has_member_with_email(
    conn: &Connection,
    workspace: WorkspaceId,
    email: &str,
) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        r#"SELECT EXISTS (SELECT 1 FROM member m JOIN "user" u ON u.id = m.user_id
                          WHERE m.workspace_id = ?1 AND u.email = ?2)"#,
    )?
    .query_row(params![workspace, email], |r| r.get(0))
}

pub fn list_members(conn: &Connection, workspace: WorkspaceId) -> rusqlite::Result<Vec<Member>> {
    let mut stmt = conn.prepare_cached(&format!(
        r#"SELECT {MEMBER_COLUMNS} FROM member m JOIN "user" u ON u.id = m.user_id
           WHERE m.workspace_id = ?1 ORDER BY m.created_at, m.rowid"#
    ))?;
    let rows = stmt.query_map([workspace], member_from_row)?;
    rows.collect()
}

pub fn get_member(
    conn: &Connection,
    workspace: WorkspaceId,
    member: MemberId,
) -> rusqlite::Result<Option<Member>> {
    conn.prepare_cached(&format!(
        r#"SELECT {MEMBER_COLUMNS} FROM member m JOIN "user" u ON u.id = m.user_id
               WHERE m.workspace_id = ?1 AND m.id = ?2"#
    ))?
    .query_row(params![workspace, member], member_from_row)
    .optional()
}

pub fn add_member(
    conn: &Connection,
    workspace: WorkspaceId,
    user: UserId,
    role: Role,
) -> Result<Member, Error> {
    let id = MemberId::new();
    // UNIQUE (workspace_id, user_id) decides, also between concurrent
    // joins; the loser changes nothing
    let added = conn
        .prepare_cached(
            "INSERT INTO member (id, workspace_id, user_id, role, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (workspace_id, user_id) DO NOTHING",
        )?
        .execute(params![id, workspace, user, role, Timestamp::now()])?;
    if added == 0 {
        return Err(Error::conflict(
            "user is already a member of this workspace",
        ));
    }
    get_member(conn, workspace, id)?.ok_or_else(|| Error::internal("inserted member vanished"))
}

pub fn count_owners(conn: &Connection, workspace: WorkspaceId) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM member WHERE workspace_id = ?1 AND role = 'owner'")?
        .query_row([workspace], |r| r.get(0))
}

pub fn set_role(conn: &Connection, member: MemberId, role: Role) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE member SET role = ?2 WHERE id = ?1")?
        .execute(params![member, role])?;
    Ok(())
}

pub fn remove_member(conn: &Connection, member: &Member) -> rusqlite::Result<()> {
    let now = Timestamp::now();
    conn.prepare_cached(
        "UPDATE agent_runtime SET status = 'offline', offline_reason = ?4, updated_at = ?3
         WHERE workspace_id = ?1 AND owner_id = ?2",
    )?
    .execute(params![
        member.workspace_id,
        member.user_id,
        now,
        crate::store::runtimes::reason("member_removed")
    ])?;
    conn.prepare_cached(
        "UPDATE daemon_token SET revoked_at = ?3
         WHERE workspace_id = ?1 AND created_by = ?2 AND revoked_at IS NULL",
    )?
    .execute(params![member.workspace_id, member.user_id, now])?;
    super::invitations::revoke_sent_by(conn, member.workspace_id, member.user_id)?;
    conn.prepare_cached("DELETE FROM member WHERE id = ?1")?
        .execute([member.id])?;
    Ok(())
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::store::sqlite::{scratch_connection, scratch_database};

    /// A migrated file with one user; the connection and the user.
    fn open() -> (tempfile::TempDir, Connection, UserId) {
        let (dir, path) = scratch_database();
        let conn = scratch_connection(&path);
        let user = super::super::users::insert(&conn, "ada@example.com", "Ada")
            .expect("user")
            .id;
        (dir, conn, user)
    }

    /// Another transaction creates a workspace with the slug the next
    /// insert of a workspace named `name` uses, just before it lands.
    fn concurrent_creation(conn: &Connection, name: &str, slug: &str) {
        conn.execute_batch(&format!(
            "CREATE TEMP TRIGGER concurrent_creation BEFORE INSERT ON main.workspace
             WHEN NEW.name = '{name}' AND NEW.slug = '{slug}'
             BEGIN
                 INSERT INTO workspace (id, name, slug, created_at, updated_at)
                 VALUES ('00000000-0000-4000-8000-000000000001', 'first', NEW.slug,
                         NEW.created_at, NEW.created_at);
             END;"
        ))
        .expect("trigger");
    }

    fn slugs(conn: &Connection) -> Vec<String> {
        conn.prepare_cached("SELECT slug FROM workspace ORDER BY rowid")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("slugs")
    }

    #[test]
    fn an_explicit_slug_taken_meanwhile_is_the_documented_conflict() {
        let (_dir, conn, user) = open();
        concurrent_creation(&conn, "Lab", "lab");
        let err = crate::store::workspaces::create(
            &crate::store::Conn::sqlite(&conn),
            "Lab",
            Some("lab"),
            "",
            user,
        )
        .expect_err("taken");
        assert!(matches!(err, Error::Conflict(_)), "{err:?}");
        assert_eq!(err.to_string(), r#"slug "lab" is already taken"#);
        assert_eq!(slugs(&conn), ["lab"]);
    }

    #[test]
    fn a_derived_slug_taken_meanwhile_moves_on_to_the_next_suffix() {
        let (_dir, conn, user) = open();
        concurrent_creation(&conn, "Lab", "lab");
        let made = crate::store::workspaces::create(
            &crate::store::Conn::sqlite(&conn),
            "Lab",
            None,
            "",
            user,
        )
        .expect("created");
        assert_eq!(made.slug, "lab-2");
        assert_eq!(slugs(&conn), ["lab", "lab-2"]);
    }

    #[test]
    fn a_membership_added_meanwhile_is_the_documented_conflict() {
        let (_dir, conn, user) = open();
        let ws = crate::store::workspaces::create(
            &crate::store::Conn::sqlite(&conn),
            "Lab",
            None,
            "",
            user,
        )
        .expect("workspace")
        .id;
        let bob = super::super::users::insert(&conn, "bob@example.com", "Bob")
            .expect("user")
            .id;
        conn.execute_batch(
            "CREATE TEMP TRIGGER concurrent_join BEFORE INSERT ON main.member
             WHEN NEW.role = 'admin'
             BEGIN
                 INSERT INTO member (id, workspace_id, user_id, role, created_at)
                 VALUES ('00000000-0000-4000-8000-000000000001', NEW.workspace_id,
                         NEW.user_id, 'member', NEW.created_at);
             END;",
        )
        .expect("trigger");
        let err = add_member(&conn, ws, bob, Role::Admin).expect_err("member");
        assert_eq!(
            err.to_string(),
            "user is already a member of this workspace"
        );
        assert_eq!(
            role_of(&conn, ws, bob, false).expect("role"),
            Some(Role::Member)
        );
    }
}
