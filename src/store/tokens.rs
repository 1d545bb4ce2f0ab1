//! `personal_access_token` and `daemon_token` rows. Only the SHA-256 of a
//! token is stored; the token itself is returned once, when it is made.

use crate::domain::{
    AgentId, TaskId, TaskStatus, TaskTokenId, Timestamp, TokenId, UserId, WorkspaceId,
};
use chrono::Duration;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{dispatch, Conn, Result};

const SECRET_HEX_LEN: usize = 40;

/// Personal access tokens: `mul_` + 40 lower-case hex digits.
pub const PAT_PREFIX: &str = "mul_";

/// Daemon tokens: `mdt_` + 40 lower-case hex digits.
pub const DAEMON_PREFIX: &str = "mdt_";

/// Task-scoped tokens, minted at claim: `mat_` + 40 lower-case hex digits.
pub const TASK_PREFIX: &str = "mat_";

/// How long a task token lives at most (its task ending ends it sooner).
pub const TASK_TOKEN_LIFETIME_HOURS: i64 = 24;

/// A fresh token: `prefix` + 40 hex digits from the OS random generator.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; SECRET_HEX_LEN / 2];
    rand::rng().fill_bytes(&mut bytes);
    let mut token = String::with_capacity(prefix.len() + SECRET_HEX_LEN);
    token.push_str(prefix);
    for b in bytes {
        token.push_str(&format!("{b:02x}"));
    }
    token
}

/// True when `token` is `prefix` followed by exactly 40 lower-case hex digits.
pub fn is_well_formed(token: &str, prefix: &str) -> bool {
    token.strip_prefix(prefix).is_some_and(|secret| {
        secret.len() == SECRET_HEX_LEN
            && secret
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Hex SHA-256 of the whole token, as stored.
pub fn hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

/// A PAT as its owner sees it in a listing (never the token itself).
#[derive(Debug, Clone, Serialize)]
pub struct PersonalToken {
    pub id: TokenId,
    pub name: String,
    pub token_prefix: String,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub revoked: bool,
    pub created_at: Timestamp,
}

/// What authentication needs to know about a stored token.
#[derive(Debug, Clone)]
pub struct StoredToken {
    pub id: TokenId,
    pub user_id: Option<UserId>,
    pub workspace_id: Option<WorkspaceId>,
    pub daemon_id: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub revoked: bool,
    pub last_used_at: Option<Timestamp>,
}

/// A token is renewed once it has less than this left.
pub const RENEW_WITHIN_DAYS: i64 = 7;

/// What renewing a token found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// No personal access or daemon token has this hash (a task token, or
    /// none at all).
    NotRenewable,
    Revoked,
    Expired,
    /// A PAT made without an expiry: nothing to extend.
    NeverExpires,
    /// More than [`RENEW_WITHIN_DAYS`] left: unchanged.
    NotYet {
        expires_at: Timestamp,
    },
    Renewed {
        expires_at: Timestamp,
    },
}

/// A live-or-not task token, as authentication needs it.
#[derive(Debug, Clone)]
pub struct StoredTaskToken {
    pub id: TaskTokenId,
    pub task_id: TaskId,
    pub workspace_id: WorkspaceId,
    pub agent_id: Option<AgentId>,
    /// The task's status now: the token works only while it is dispatched
    /// or running.
    pub task_status: TaskStatus,
    pub expires_at: Timestamp,
}

/// Creates a PAT for `user`; returns its listing row and the token.
pub fn create_personal(
    conn: &Conn<'_>,
    user: UserId,
    name: &str,
    expires_at: Option<Timestamp>,
) -> Result<(PersonalToken, String)> {
    dispatch!(conn, tokens::create_personal(user, name, expires_at))
}

/// How many of `user`'s PATs still authenticate (not revoked, not expired).
pub fn count_live_personal(conn: &Conn<'_>, user: UserId) -> Result<i64> {
    dispatch!(conn, tokens::count_live_personal(user))
}

/// `user`'s tokens, newest first.
pub fn list_personal(conn: &Conn<'_>, user: UserId) -> Result<Vec<PersonalToken>> {
    dispatch!(conn, tokens::list_personal(user))
}

/// Revokes `user`'s token `id`: `None` when they have no such token
/// (including someone else's: ids are not probe-able), `Some(true)` when
/// it was live until now, `Some(false)` when it was already revoked
/// (nothing changes then).
pub fn revoke_personal(conn: &Conn<'_>, user: UserId, id: TokenId) -> Result<Option<bool>> {
    dispatch!(conn, tokens::revoke_personal(user, id))
}

pub fn find_personal(conn: &Conn<'_>, token_hash: &str) -> Result<Option<StoredToken>> {
    dispatch!(conn, tokens::find_personal(token_hash))
}

pub fn find_daemon(conn: &Conn<'_>, token_hash: &str) -> Result<Option<StoredToken>> {
    dispatch!(conn, tokens::find_daemon(token_hash))
}

/// Records that a PAT was used (the caller throttles how often).
pub fn touch_personal(conn: &Conn<'_>, id: TokenId, at: Timestamp) -> Result<()> {
    dispatch!(conn, tokens::touch_personal(id, at))
}

/// Renews the personal access or daemon token with `token_hash` in place,
/// so every process holding it goes on working: once it has less than
/// [`RENEW_WITHIN_DAYS`] left, it gets its own lifetime again (from when it
/// was made or last renewed to its expiry), counted from `now`. The write
/// is conditional on the expiry it read and on the token being unrevoked,
/// so concurrent renewals extend once and a revocation is never undone.
pub fn renew(conn: &Conn<'_>, token_hash: &str, now: Timestamp) -> Result<Renewal> {
    // a renewal or revocation that lands between the read and the write
    // makes the write change nothing; the token is then read again
    for _ in 0..3 {
        if let Some(renewal) = renew_once(conn, token_hash, now)? {
            return Ok(renewal);
        }
    }
    Err(super::Error::Busy)
}

/// One attempt at [`renew`]; `None` when the token changed between its
/// read and the conditional write.
fn renew_once(conn: &Conn<'_>, token_hash: &str, now: Timestamp) -> Result<Option<Renewal>> {
    let found: Result<Option<RenewableToken>> = dispatch!(conn, tokens::find_renewable(token_hash));
    let Some(RenewableToken {
        table,
        id,
        expires_at,
        revoked,
        since,
    }) = found?
    else {
        return Ok(Some(Renewal::NotRenewable));
    };
    if revoked {
        return Ok(Some(Renewal::Revoked));
    }
    let Some(expires_at) = expires_at else {
        return Ok(Some(Renewal::NeverExpires));
    };
    if expires_at <= now {
        return Ok(Some(Renewal::Expired));
    }
    if expires_at - now >= Duration::days(RENEW_WITHIN_DAYS) {
        return Ok(Some(Renewal::NotYet { expires_at }));
    }
    let lifetime = Some(expires_at - since)
        .filter(|l| *l > Duration::zero())
        .unwrap_or_else(|| Duration::days(RENEW_WITHIN_DAYS));
    let renewed = now + lifetime;
    let extended: Result<bool> =
        dispatch!(conn, tokens::extend(table, id, expires_at, renewed, now));
    Ok(extended?.then_some(Renewal::Renewed {
        expires_at: renewed,
    }))
}

/// Which table a token lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenTable {
    Personal,
    Daemon,
}

impl TokenTable {
    pub(super) const ALL: [TokenTable; 2] = [TokenTable::Personal, TokenTable::Daemon];

    pub(super) fn name(self) -> &'static str {
        match self {
            TokenTable::Personal => "personal_access_token",
            TokenTable::Daemon => "daemon_token",
        }
    }
}

/// A stored token as renewal needs it.
pub(super) struct RenewableToken {
    pub table: TokenTable,
    pub id: TokenId,
    pub expires_at: Option<Timestamp>,
    pub revoked: bool,
    /// when it was made or last renewed
    pub since: Timestamp,
}

/// Mints a daemon token for `daemon_id` in `workspace`; returns the token.
pub fn create_daemon(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    daemon_id: &str,
    created_by: UserId,
    expires_at: Timestamp,
) -> Result<String> {
    dispatch!(
        conn,
        tokens::create_daemon(workspace, daemon_id, created_by, expires_at)
    )
}

/// How many daemon tokens `user` minted in `workspace` that still
/// authenticate (not revoked, not expired).
pub fn count_live_daemon(conn: &Conn<'_>, workspace: WorkspaceId, user: UserId) -> Result<i64> {
    dispatch!(conn, tokens::count_live_daemon(workspace, user))
}

/// Mints the task token of `task` (claimed just now); returns the token,
/// which is shown once — only its hash is stored.
pub fn create_task_token(conn: &Conn<'_>, task: TaskId, workspace: WorkspaceId) -> Result<String> {
    dispatch!(conn, tokens::create_task_token(task, workspace))
}

pub fn find_task_token(conn: &Conn<'_>, token_hash: &str) -> Result<Option<StoredTaskToken>> {
    dispatch!(conn, tokens::find_task_token(token_hash))
}
