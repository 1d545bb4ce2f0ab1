//! `workspace` and `member` rows.

use postgres::Row;

use super::Client;

use crate::domain::{MemberId, Role, Timestamp, UserId, WorkspaceId};
use crate::store::workspaces::*;
use crate::store::Error;

const WORKSPACE_COLUMNS: &str =
    "w.id, w.name, w.slug, w.description, w.created_at, w.updated_at, w.timezone, \
     w.max_concurrent_tasks";
const MEMBER_COLUMNS: &str =
    "m.id, m.workspace_id, m.user_id, m.role, u.name, u.email, m.created_at";

fn workspace_from_row(row: &Row) -> Result<Workspace, postgres::Error> {
    Ok(Workspace {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        slug: row.try_get(2)?,
        description: row.try_get(3)?,
        created_at: row.try_get(4)?,
        updated_at: row.try_get(5)?,
        timezone: row.try_get(6)?,
        max_concurrent_tasks: row.try_get(7)?,
    })
}

fn member_from_row(row: &Row) -> Result<Member, postgres::Error> {
    Ok(Member {
        id: row.try_get(0)?,
        workspace_id: row.try_get(1)?,
        user_id: row.try_get(2)?,
        role: row.try_get(3)?,
        name: row.try_get(4)?,
        email: row.try_get(5)?,
        created_at: row.try_get(6)?,
    })
}

/// Inserts the workspace row unless `slug` is taken; whether it did. The
/// UNIQUE slug decides, also between concurrent creations: `ON CONFLICT
/// (slug) DO NOTHING` waits for a concurrent insert of the slug and does
/// nothing if it commits, so no error aborts the transaction.
pub fn insert_with_slug(
    conn: &mut Client,
    id: WorkspaceId,
    name: &str,
    slug: &str,
    description: &str,
) -> Result<bool, postgres::Error> {
    let added = conn.execute(
        "INSERT INTO workspace (id, name, slug, description, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5)
         ON CONFLICT (slug) DO NOTHING",
        &[&id, &name, &slug, &description, &Timestamp::now()],
    )?;
    Ok(added > 0)
}

/// Whether a workspace has `slug`.
pub fn slug_taken(conn: &mut Client, slug: &str) -> Result<bool, postgres::Error> {
    Ok(conn
        .query_opt("SELECT 1 FROM workspace WHERE slug = $1", &[&slug])?
        .is_some())
}

/// Takes the workspace's row lock (`FOR UPDATE`) until the transaction
/// ends: concurrent writers of one workspace that lock it take turns, and
/// each statement after it (READ COMMITTED) sees what the previous holder
/// committed.
pub fn lock(conn: &mut Client, id: WorkspaceId) -> Result<(), postgres::Error> {
    conn.execute("SELECT 1 FROM workspace WHERE id = $1 FOR UPDATE", &[&id])?;
    Ok(())
}

pub fn get(conn: &mut Client, id: WorkspaceId) -> Result<Option<Workspace>, postgres::Error> {
    conn.query_opt(
        &format!("SELECT {WORKSPACE_COLUMNS} FROM workspace w WHERE w.id = $1"),
        &[&id],
    )?
    .as_ref()
    .map(workspace_from_row)
    .transpose()
}

pub fn update(
    conn: &mut Client,
    id: WorkspaceId,
    settings: &Settings,
    at: Timestamp,
) -> Result<Option<Workspace>, postgres::Error> {
    conn.query_opt(
        &format!(
            "UPDATE workspace AS w SET name = coalesce($2, name),
                 description = coalesce($3, description),
                 timezone = coalesce($4, timezone), updated_at = $5,
                 max_concurrent_tasks = CASE WHEN $6::boolean THEN $7 ELSE max_concurrent_tasks END
             WHERE w.id = $1
             RETURNING {WORKSPACE_COLUMNS}"
        ),
        &[
            &id,
            &settings.name,
            &settings.description,
            &settings.timezone,
            &at,
            &settings.max_concurrent_tasks.is_some(),
            &settings.max_concurrent_tasks.flatten(),
        ],
    )?
    .as_ref()
    .map(workspace_from_row)
    .transpose()
}

pub fn list_for_user(conn: &mut Client, user: UserId) -> Result<Vec<Workspace>, postgres::Error> {
    conn.query(
        &format!(
            "SELECT {WORKSPACE_COLUMNS} FROM workspace w
             JOIN member m ON m.workspace_id = w.id
             WHERE m.user_id = $1
             ORDER BY w.created_at, w.seq"
        ),
        &[&user],
    )?
    .iter()
    .map(workspace_from_row)
    .collect()
}

/// A plain read (no `FOR SHARE`): it also answers access checks on reads,
/// outside any transaction. The writes whose rules rest on a role (role
/// changes, removals, invitations) take [`lock`] first, as do role changes
/// and removals themselves, so what this reads after it is current.
/// With `lock` (inside a write), `FOR SHARE`: a concurrent role change or
/// removal holds the row until it commits, and the locked read then sees
/// its outcome.
pub fn role_of(
    conn: &mut Client,
    workspace: WorkspaceId,
    user: UserId,
    lock: bool,
) -> Result<Option<Role>, postgres::Error> {
    let sql = if lock {
        "SELECT role FROM member WHERE workspace_id = $1 AND user_id = $2 FOR SHARE"
    } else {
        "SELECT role FROM member WHERE workspace_id = $1 AND user_id = $2"
    };
    conn.query_opt(sql, &[&workspace, &user])?
        .map(|r| r.try_get(0))
        .transpose()
}

pub fn has_member_with_email(
    conn: &mut Client,
    workspace: WorkspaceId,
    email: &str,
) -> Result<bool, postgres::Error> {
    // `lower` of the parameter folds as the column's "C" collation does
    // (ASCII only, as SQLite's NOCASE), whatever the database's default
    conn.query_one(
        r#"SELECT EXISTS (SELECT 1 FROM member m JOIN "user" u ON u.id = m.user_id
                          WHERE m.workspace_id = $1
                            AND lower(u.email) = lower($2::text COLLATE "C"))"#,
        &[&workspace, &email],
    )?
    .try_get(0)
}

pub fn list_members(
    conn: &mut Client,
    workspace: WorkspaceId,
) -> Result<Vec<Member>, postgres::Error> {
    conn.query(
        &format!(
            r#"SELECT {MEMBER_COLUMNS} FROM member m JOIN "user" u ON u.id = m.user_id
               WHERE m.workspace_id = $1 ORDER BY m.created_at, m.seq"#
        ),
        &[&workspace],
    )?
    .iter()
    .map(member_from_row)
    .collect()
}

pub fn get_member(
    conn: &mut Client,
    workspace: WorkspaceId,
    member: MemberId,
) -> Result<Option<Member>, postgres::Error> {
    conn.query_opt(
        &format!(
            r#"SELECT {MEMBER_COLUMNS} FROM member m JOIN "user" u ON u.id = m.user_id
               WHERE m.workspace_id = $1 AND m.id = $2"#
        ),
        &[&workspace, &member],
    )?
    .as_ref()
    .map(member_from_row)
    .transpose()
}

pub fn add_member(
    conn: &mut Client,
    workspace: WorkspaceId,
    user: UserId,
    role: Role,
) -> Result<Member, Error> {
    let id = MemberId::new();
    // UNIQUE (workspace_id, user_id) decides, also between concurrent
    // joins (ON CONFLICT waits for the other insert's outcome); the loser
    // changes nothing
    let added = conn.execute(
        "INSERT INTO member (id, workspace_id, user_id, role, created_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (workspace_id, user_id) DO NOTHING",
        &[&id, &workspace, &user, &role, &Timestamp::now()],
    )?;
    if added == 0 {
        return Err(Error::conflict(
            "user is already a member of this workspace",
        ));
    }
    get_member(conn, workspace, id)?.ok_or_else(|| Error::internal("inserted member vanished"))
}

pub fn count_owners(conn: &mut Client, workspace: WorkspaceId) -> Result<i64, postgres::Error> {
    conn.query_one(
        "SELECT count(*) FROM member WHERE workspace_id = $1 AND role = 'owner'",
        &[&workspace],
    )?
    .try_get(0)
}

pub fn set_role(conn: &mut Client, member: MemberId, role: Role) -> Result<(), postgres::Error> {
    conn.execute(
        "UPDATE member SET role = $2 WHERE id = $1",
        &[&member, &role],
    )?;
    Ok(())
}

pub fn remove_member(conn: &mut Client, member: &Member) -> Result<(), postgres::Error> {
    let now = Timestamp::now();
    conn.execute(
        "UPDATE agent_runtime
         SET status = 'offline', offline_reason = $4::text::jsonb, updated_at = $3
         WHERE workspace_id = $1 AND owner_id = $2",
        &[
            &member.workspace_id,
            &member.user_id,
            &now,
            &crate::store::runtimes::reason("member_removed"),
        ],
    )?;
    conn.execute(
        "UPDATE daemon_token SET revoked_at = $3
         WHERE workspace_id = $1 AND created_by = $2 AND revoked_at IS NULL",
        &[&member.workspace_id, &member.user_id, &now],
    )?;
    super::invitations::revoke_sent_by(conn, member.workspace_id, member.user_id)?;
    conn.execute("DELETE FROM member WHERE id = $1", &[&member.id])?;
    Ok(())
}
