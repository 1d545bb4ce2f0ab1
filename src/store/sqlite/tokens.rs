//! `personal_access_token` and `daemon_token` rows. Only the SHA-256 of a
//! token is stored; the token itself is returned once, when it is made.

use chrono::Duration;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::{TaskId, TaskTokenId, Timestamp, TokenId, UserId, WorkspaceId};
use crate::store::tokens::*;

/// Characters of a PAT kept in clear so a user can tell their tokens apart.
const SHOWN_PREFIX_LEN: usize = 8;

const PAT_COLUMNS: &str =
    "id, name, token_prefix, expires_at, last_used_at, revoked_at IS NOT NULL, created_at";

fn pat_from_row(row: &Row<'_>) -> rusqlite::Result<PersonalToken> {
    Ok(PersonalToken {
        id: row.get(0)?,
        name: row.get(1)?,
        token_prefix: row.get(2)?,
        expires_at: row.get(3)?,
        last_used_at: row.get(4)?,
        revoked: row.get(5)?,
        created_at: row.get(6)?,
    })
}

pub fn create_personal(
    conn: &Connection,
    user: UserId,
    name: &str,
    expires_at: Option<Timestamp>,
) -> rusqlite::Result<(PersonalToken, String)> {
    let token = generate(PAT_PREFIX);
    let id = TokenId::new();
    conn.prepare_cached(
        "INSERT INTO personal_access_token
             (id, user_id, name, token_hash, token_prefix, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        id,
        user,
        name,
        hash(&token),
        &token[..SHOWN_PREFIX_LEN],
        expires_at,
        Timestamp::now()
    ])?;
    let row = conn
        .prepare_cached(&format!(
            "SELECT {PAT_COLUMNS} FROM personal_access_token WHERE id = ?1"
        ))?
        .query_row([id], pat_from_row)?;
    Ok((row, token))
}

pub fn count_live_personal(conn: &Connection, user: UserId) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT count(*) FROM personal_access_token
         WHERE user_id = ?1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)",
    )?
    .query_row(params![user, Timestamp::now()], |r| r.get(0))
}

pub fn list_personal(conn: &Connection, user: UserId) -> rusqlite::Result<Vec<PersonalToken>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PAT_COLUMNS} FROM personal_access_token WHERE user_id = ?1
         ORDER BY created_at DESC, rowid DESC"
    ))?;
    let rows = stmt.query_map([user], pat_from_row)?;
    rows.collect()
}

pub fn revoke_personal(
    conn: &Connection,
    user: UserId,
    id: TokenId,
) -> rusqlite::Result<Option<bool>> {
    let found: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM personal_access_token WHERE id = ?1 AND user_id = ?2)",
        )?
        .query_row(params![id, user], |r| r.get(0))?;
    let revoked = conn
        .prepare_cached(
            "UPDATE personal_access_token SET revoked_at = ?3
         WHERE id = ?1 AND user_id = ?2 AND revoked_at IS NULL",
        )?
        .execute(params![id, user, Timestamp::now()])?;
    Ok(found.then_some(revoked > 0))
}

pub fn find_personal(conn: &Connection, token_hash: &str) -> rusqlite::Result<Option<StoredToken>> {
    conn.prepare_cached(
        "SELECT id, user_id, expires_at, revoked_at IS NOT NULL, last_used_at
         FROM personal_access_token WHERE token_hash = ?1",
    )?
    .query_row([token_hash], |r| {
        Ok(StoredToken {
            id: r.get(0)?,
            user_id: Some(r.get(1)?),
            workspace_id: None,
            daemon_id: None,
            expires_at: r.get(2)?,
            revoked: r.get(3)?,
            last_used_at: r.get(4)?,
        })
    })
    .optional()
}

pub fn find_daemon(conn: &Connection, token_hash: &str) -> rusqlite::Result<Option<StoredToken>> {
    conn.prepare_cached(
        "SELECT id, created_by, workspace_id, daemon_id, expires_at, revoked_at IS NOT NULL
         FROM daemon_token WHERE token_hash = ?1",
    )?
    .query_row([token_hash], |r| {
        Ok(StoredToken {
            id: r.get(0)?,
            user_id: r.get(1)?,
            workspace_id: Some(r.get(2)?),
            daemon_id: Some(r.get(3)?),
            expires_at: Some(r.get(4)?),
            revoked: r.get(5)?,
            last_used_at: None,
        })
    })
    .optional()
}

pub fn touch_personal(conn: &Connection, id: TokenId, at: Timestamp) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE personal_access_token SET last_used_at = ?2 WHERE id = ?1")?
        .execute(params![id, at])?;
    Ok(())
}

/// The token with `token_hash`, in either table.
pub fn find_renewable(
    conn: &Connection,
    token_hash: &str,
) -> rusqlite::Result<Option<RenewableToken>> {
    for table in TokenTable::ALL {
        let row = conn
            .prepare_cached(&format!(
                "SELECT id, expires_at, revoked_at IS NOT NULL, coalesce(renewed_at, created_at)
                     FROM {} WHERE token_hash = ?1",
                table.name()
            ))?
            .query_row([token_hash], |r| {
                Ok(RenewableToken {
                    table,
                    id: r.get(0)?,
                    expires_at: r.get(1)?,
                    revoked: r.get(2)?,
                    since: r.get(3)?,
                })
            })
            .optional()?;
        if row.is_some() {
            return Ok(row);
        }
    }
    Ok(None)
}

/// Sets a token's new expiry if it still has `expires_at` and is not
/// revoked; whether it did.
pub fn extend(
    conn: &Connection,
    table: TokenTable,
    id: TokenId,
    expires_at: Timestamp,
    renewed: Timestamp,
    now: Timestamp,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(&format!(
            "UPDATE {} SET expires_at = ?2, renewed_at = ?3
             WHERE id = ?1 AND revoked_at IS NULL AND expires_at = ?4",
            table.name()
        ))?
        .execute(params![id, renewed, now, expires_at])?;
    Ok(changed > 0)
}

pub fn create_daemon(
    conn: &Connection,
    workspace: WorkspaceId,
    daemon_id: &str,
    created_by: UserId,
    expires_at: Timestamp,
) -> rusqlite::Result<String> {
    let token = generate(DAEMON_PREFIX);
    conn.prepare_cached(
        "INSERT INTO daemon_token
             (id, token_hash, workspace_id, daemon_id, created_by, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        TokenId::new(),
        hash(&token),
        workspace,
        daemon_id,
        created_by,
        expires_at,
        Timestamp::now()
    ])?;
    Ok(token)
}

pub fn count_live_daemon(
    conn: &Connection,
    workspace: WorkspaceId,
    user: UserId,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT count(*) FROM daemon_token
         WHERE created_by = ?2 AND workspace_id = ?1 AND revoked_at IS NULL AND expires_at > ?3",
    )?
    .query_row(params![workspace, user, Timestamp::now()], |r| r.get(0))
}

pub fn create_task_token(
    conn: &Connection,
    task: TaskId,
    workspace: WorkspaceId,
) -> rusqlite::Result<String> {
    let token = generate(TASK_PREFIX);
    let now = Timestamp::now();
    let expires = now + Duration::hours(TASK_TOKEN_LIFETIME_HOURS);
    conn.prepare_cached(
        "INSERT INTO task_token (id, token_hash, task_id, workspace_id, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        TaskTokenId::new(),
        hash(&token),
        task,
        workspace,
        expires,
        now
    ])?;
    Ok(token)
}

pub fn find_task_token(
    conn: &Connection,
    token_hash: &str,
) -> rusqlite::Result<Option<StoredTaskToken>> {
    conn.prepare_cached(
        "SELECT tt.id, tt.task_id, tt.workspace_id, t.agent_id, t.status, tt.expires_at
         FROM task_token tt JOIN agent_task_queue t ON t.id = tt.task_id
         WHERE tt.token_hash = ?1",
    )?
    .query_row([token_hash], |r| {
        Ok(StoredTaskToken {
            id: r.get(0)?,
            task_id: r.get(1)?,
            workspace_id: r.get(2)?,
            agent_id: r.get(3)?,
            task_status: r.get(4)?,
            expires_at: r.get(5)?,
        })
    })
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_well_formed_and_distinct() {
        let a = generate(PAT_PREFIX);
        let b = generate(PAT_PREFIX);
        assert!(is_well_formed(&a, PAT_PREFIX), "{a}");
        assert!(!is_well_formed(&a, DAEMON_PREFIX));
        assert_ne!(a, b);
        assert_eq!(hash(&a).len(), 64);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        assert!(!is_well_formed("mul_", PAT_PREFIX));
        assert!(!is_well_formed(
            &format!("mul_{}", "A".repeat(40)),
            PAT_PREFIX
        ));
        assert!(!is_well_formed(
            &format!("mul_{}", "a".repeat(41)),
            PAT_PREFIX
        ));
    }
}
