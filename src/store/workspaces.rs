//! `workspace` and `member` rows.

use crate::domain::{MemberId, Role, Timestamp, UserId, WorkspaceId};
use serde::Serialize;

use super::{dispatch, Conn, Result};

#[derive(Debug, Clone, Serialize)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The IANA zone its days and months (budget periods) start in.
    pub timezone: String,
    /// Most of its tasks dispatched or running at once, on all its
    /// runtimes together; null: no limit.
    pub max_concurrent_tasks: Option<i64>,
}

/// A membership, with the member's user fields so a list is readable.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub id: MemberId,
    pub workspace_id: WorkspaceId,
    pub user_id: UserId,
    pub role: Role,
    pub name: String,
    pub email: String,
    pub created_at: Timestamp,
}

/// Lower-case letters, digits and single dashes, from a display name.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "workspace".to_string()
    } else {
        slug.to_string()
    }
}

/// Creates a workspace owned by `owner`. An explicit slug that is taken is a
/// 409; a slug derived from the name gets a `-2`, `-3`, … suffix instead.
/// The schema's UNIQUE slug decides: of concurrent creations with one
/// explicit slug exactly one succeeds, and concurrent derived ones get
/// distinct suffixes.
pub fn create(
    conn: &Conn<'_>,
    name: &str,
    slug: Option<&str>,
    description: &str,
    owner: UserId,
) -> Result<Workspace> {
    let id = WorkspaceId::new();
    let inserted = |slug: &str| -> Result<bool> {
        dispatch!(
            conn,
            workspaces::insert_with_slug(id, name, slug, description)
        )
    };
    match slug {
        Some(slug) => {
            if !inserted(slug)? {
                return Err(super::Error::conflict(format!(
                    "slug {slug:?} is already taken"
                )));
            }
        }
        None => {
            // the first of `base`, `base-2`, `base-3`, … that is free; a
            // suffix taken between the look-up and the insert (by a
            // concurrent creation) moves on to the next one
            let base = slugify(name);
            let mut n = 1u64;
            loop {
                let candidate = match n {
                    1 => base.clone(),
                    n => format!("{base}-{n}"),
                };
                let taken: Result<bool> = dispatch!(conn, workspaces::slug_taken(&candidate));
                if !taken? && inserted(&candidate)? {
                    break;
                }
                n += 1;
            }
        }
    }
    add_member(conn, id, owner, Role::Owner)?;
    get(conn, id)?.ok_or_else(|| super::Error::internal("inserted workspace vanished"))
}

/// Holds `workspace`'s row against concurrent writers until the
/// transaction ends. Rules over several rows of one workspace — it keeps an
/// owner, a daemon_id belongs to one member, at most so many pending
/// invitations or daemon tokens, an invitation grants what its sender may
/// grant — are checked after it, so concurrent writes of one workspace take
/// turns on an engine with row locks instead of each deciding on what the
/// other has not committed yet.
pub fn lock(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<()> {
    dispatch!(conn, workspaces::lock(workspace))
}

pub fn get(conn: &Conn<'_>, id: WorkspaceId) -> Result<Option<Workspace>> {
    dispatch!(conn, workspaces::get(id))
}

/// What an owner or admin may change of a workspace; `None` keeps it.
#[derive(Debug, Default)]
pub struct Settings {
    pub name: Option<String>,
    pub description: Option<String>,
    pub timezone: Option<String>,
    /// `Some(None)` lifts the limit.
    pub max_concurrent_tasks: Option<Option<i64>>,
}

/// Changes the workspace's settings, returning it as it now is.
pub fn update(conn: &Conn<'_>, id: WorkspaceId, settings: &Settings) -> Result<Option<Workspace>> {
    dispatch!(conn, workspaces::update(id, settings, Timestamp::now()))
}

/// Workspaces `user` belongs to, oldest first.
pub fn list_for_user(conn: &Conn<'_>, user: UserId) -> Result<Vec<Workspace>> {
    dispatch!(conn, workspaces::list_for_user(user))
}

/// The role of `user` in `workspace`, if they are a member. Inside a write
/// the membership row is share-locked where the engine has row locks, so
/// a change of it that another transaction has not committed yet is
/// waited for and seen: a write never acts on a role being taken away.
pub fn role_of(conn: &Conn<'_>, workspace: WorkspaceId, user: UserId) -> Result<Option<Role>> {
    let lock = conn.writing();
    dispatch!(conn, workspaces::role_of(workspace, user, lock))
}

/// Whether the user with `email` (compared case-insensitively) belongs to
/// `workspace`.
pub fn has_member_with_email(conn: &Conn<'_>, workspace: WorkspaceId, email: &str) -> Result<bool> {
    dispatch!(conn, workspaces::has_member_with_email(workspace, email))
}

pub fn list_members(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<Vec<Member>> {
    dispatch!(conn, workspaces::list_members(workspace))
}

pub fn get_member(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    member: MemberId,
) -> Result<Option<Member>> {
    dispatch!(conn, workspaces::get_member(workspace, member))
}

/// Adds `user` to `workspace`; 409 when they already belong to it (the
/// schema's UNIQUE (workspace, user) decides, also between concurrent
/// joins).
pub fn add_member(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    user: UserId,
    role: Role,
) -> Result<Member> {
    dispatch!(conn, workspaces::add_member(workspace, user, role))
}

pub fn count_owners(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<i64> {
    dispatch!(conn, workspaces::count_owners(workspace))
}

pub fn set_role(conn: &Conn<'_>, member: MemberId, role: Role) -> Result<()> {
    dispatch!(conn, workspaces::set_role(member, role))
}

/// Removes a membership. What the member left running in the workspace stops
/// answering for them: their runtimes go offline with the reason
/// `member_removed` (already offline ones too: that is now why they stay
/// so), the daemon tokens they minted for it and the invitations they sent
/// for it are revoked.
pub fn remove_member(conn: &Conn<'_>, member: &Member) -> Result<()> {
    dispatch!(conn, workspaces::remove_member(member))
}
