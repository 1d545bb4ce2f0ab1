//! `workspace` and `member` rows.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::{Id, Role};
#[allow(unused_imports)]
use crate::store::workspaces::*;
use crate::store::Error;
use crate::store::{api_time, now};

const WORKSPACE_COLUMNS: &str = "w.id, w.name, w.slug, w.description, w.created_at, w.updated_at";
const MEMBER_COLUMNS: &str =
    "m.id, m.workspace_id, m.user_id, m.role, u.name, u.email, m.created_at";

fn workspace_from_row(row: &Row<'_>) -> rusqlite::Result<Workspace> {
    Ok(Workspace {
        id: row.get(0)?,
        name: row.get(1)?,
        slug: row.get(2)?,
        description: row.get(3)?,
        created_at: api_time(&row.get::<_, String>(4)?),
        updated_at: api_time(&row.get::<_, String>(5)?),
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
        created_at: api_time(&row.get::<_, String>(6)?),
    })
}

fn slug_taken(conn: &Connection, slug: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM workspace WHERE slug = ?1)",
        [slug],
        |r| r.get(0),
    )
}

pub fn create(
    conn: &Connection,
    name: &str,
    slug: Option<&str>,
    description: &str,
    owner: Id,
) -> Result<Workspace, Error> {
    let slug = match slug {
        Some(slug) if slug_taken(conn, slug)? => {
            return Err(Error::conflict(format!("slug {slug:?} is already taken")))
        }
        Some(slug) => slug.to_string(),
        None => {
            let base = slugify(name);
            let mut candidate = base.clone();
            let mut n = 2;
            while slug_taken(conn, &candidate)? {
                candidate = format!("{base}-{n}");
                n += 1;
            }
            candidate
        }
    };
    let id = Id::new();
    let now = now();
    conn.execute(
        "INSERT INTO workspace (id, name, slug, description, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![id, name, slug, description, now],
    )?;
    add_member(conn, id, owner, Role::Owner)?;
    get(conn, id)?.ok_or_else(|| Error::internal("inserted workspace vanished"))
}

pub fn get(conn: &Connection, id: Id) -> rusqlite::Result<Option<Workspace>> {
    conn.query_row(
        &format!("SELECT {WORKSPACE_COLUMNS} FROM workspace w WHERE w.id = ?1"),
        [id],
        workspace_from_row,
    )
    .optional()
}

pub fn list_for_user(conn: &Connection, user: Id) -> rusqlite::Result<Vec<Workspace>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {WORKSPACE_COLUMNS} FROM workspace w
         JOIN member m ON m.workspace_id = w.id
         WHERE m.user_id = ?1
         ORDER BY w.created_at, w.rowid"
    ))?;
    let rows = stmt.query_map([user], workspace_from_row)?;
    rows.collect()
}

pub fn role_of(conn: &Connection, workspace: Id, user: Id) -> rusqlite::Result<Option<Role>> {
    conn.query_row(
        "SELECT role FROM member WHERE workspace_id = ?1 AND user_id = ?2",
        [workspace, user],
        |r| r.get(0),
    )
    .optional()
}

pub fn has_member_with_email(
    conn: &Connection,
    workspace: Id,
    email: &str,
) -> rusqlite::Result<bool> {
    conn.query_row(
        r#"SELECT EXISTS (SELECT 1 FROM member m JOIN "user" u ON u.id = m.user_id
                          WHERE m.workspace_id = ?1 AND u.email = ?2)"#,
        params![workspace, email],
        |r| r.get(0),
    )
}

pub fn list_members(conn: &Connection, workspace: Id) -> rusqlite::Result<Vec<Member>> {
    let mut stmt = conn.prepare(&format!(
        r#"SELECT {MEMBER_COLUMNS} FROM member m JOIN "user" u ON u.id = m.user_id
           WHERE m.workspace_id = ?1 ORDER BY m.created_at, m.rowid"#
    ))?;
    let rows = stmt.query_map([workspace], member_from_row)?;
    rows.collect()
}

pub fn get_member(
    conn: &Connection,
    workspace: Id,
    member: Id,
) -> rusqlite::Result<Option<Member>> {
    conn.query_row(
        &format!(
            r#"SELECT {MEMBER_COLUMNS} FROM member m JOIN "user" u ON u.id = m.user_id
               WHERE m.workspace_id = ?1 AND m.id = ?2"#
        ),
        [workspace, member],
        member_from_row,
    )
    .optional()
}

pub fn add_member(conn: &Connection, workspace: Id, user: Id, role: Role) -> Result<Member, Error> {
    if role_of(conn, workspace, user)?.is_some() {
        return Err(Error::conflict(
            "user is already a member of this workspace",
        ));
    }
    let id = Id::new();
    conn.execute(
        "INSERT INTO member (id, workspace_id, user_id, role, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, workspace, user, role, now()],
    )?;
    get_member(conn, workspace, id)?.ok_or_else(|| Error::internal("inserted member vanished"))
}

pub fn count_owners(conn: &Connection, workspace: Id) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM member WHERE workspace_id = ?1 AND role = 'owner'",
        [workspace],
        |r| r.get(0),
    )
}

pub fn set_role(conn: &Connection, member: Id, role: Role) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE member SET role = ?2 WHERE id = ?1",
        params![member, role],
    )?;
    Ok(())
}

pub fn remove_member(conn: &Connection, member: &Member) -> rusqlite::Result<()> {
    let now = now();
    conn.execute(
        "UPDATE agent_runtime SET status = 'offline', offline_reason = ?4, updated_at = ?3
         WHERE workspace_id = ?1 AND owner_id = ?2",
        params![
            member.workspace_id,
            member.user_id,
            now,
            crate::store::runtimes::reason("member_removed")
        ],
    )?;
    conn.execute(
        "UPDATE daemon_token SET revoked_at = ?3
         WHERE workspace_id = ?1 AND created_by = ?2 AND revoked_at IS NULL",
        params![member.workspace_id, member.user_id, now],
    )?;
    super::invitations::revoke_sent_by(conn, member.workspace_id, member.user_id)?;
    conn.execute("DELETE FROM member WHERE id = ?1", [member.id])?;
    Ok(())
}
