//! `personal_access_token` and `daemon_token` rows. Only the SHA-256 of a
//! token is stored; the token itself is returned once, when it is made.

use chrono::Duration;
use postgres::Row;

use super::Client;

use crate::domain::{TaskId, TaskTokenId, Timestamp, TokenId, UserId, WorkspaceId};
use crate::store::tokens::*;
use crate::store::Error;

/// Characters of a PAT kept in clear so a user can tell their tokens apart
/// (as the SQLite engine keeps them).
const SHOWN_PREFIX_LEN: usize = 8;

const PAT_COLUMNS: &str =
    "id, name, token_prefix, expires_at, last_used_at, revoked_at IS NOT NULL, created_at";

fn pat_from_row(row: &Row) -> Result<PersonalToken, postgres::Error> {
    Ok(PersonalToken {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        token_prefix: row.try_get(2)?,
        expires_at: row.try_get(3)?,
        last_used_at: row.try_get(4)?,
        revoked: row.try_get(5)?,
        created_at: row.try_get(6)?,
    })
}

/// One statement (`INSERT … RETURNING`) where SQLite inserts, then reads.
pub fn create_personal(
    conn: &mut Client,
    user: UserId,
    name: &str,
    expires_at: Option<Timestamp>,
) -> Result<(PersonalToken, String), Error> {
    let token = generate(PAT_PREFIX);
    let shown = token.get(..SHOWN_PREFIX_LEN).unwrap_or(&token);
    let row = conn
        .query_opt(
            &format!(
                "INSERT INTO personal_access_token
                     (id, user_id, name, token_hash, token_prefix, expires_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 RETURNING {PAT_COLUMNS}"
            ),
            &[
                &TokenId::new(),
                &user,
                &name,
                &hash(&token),
                &shown,
                &expires_at,
                &Timestamp::now(),
            ],
        )?
        .ok_or_else(|| Error::internal("database: the inserted token was not returned"))?;
    Ok((pat_from_row(&row)?, token))
}

pub fn count_live_personal(conn: &mut Client, user: UserId) -> Result<i64, postgres::Error> {
    conn.query_one(
        "SELECT count(*) FROM personal_access_token
         WHERE user_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
        &[&user, &Timestamp::now()],
    )?
    .try_get(0)
}

pub fn list_personal(
    conn: &mut Client,
    user: UserId,
) -> Result<Vec<PersonalToken>, postgres::Error> {
    conn.query(
        &format!(
            "SELECT {PAT_COLUMNS} FROM personal_access_token WHERE user_id = $1
             ORDER BY created_at DESC, seq DESC"
        ),
        &[&user],
    )?
    .iter()
    .map(pat_from_row)
    .collect()
}

pub fn revoke_personal(
    conn: &mut Client,
    user: UserId,
    id: TokenId,
) -> Result<Option<bool>, postgres::Error> {
    let found: bool = conn
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM personal_access_token WHERE id = $1 AND user_id = $2)",
            &[&id, &user],
        )?
        .try_get(0)?;
    let revoked = conn.execute(
        "UPDATE personal_access_token SET revoked_at = $3
         WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        &[&id, &user, &Timestamp::now()],
    )?;
    Ok(found.then_some(revoked > 0))
}

pub fn find_personal(
    conn: &mut Client,
    token_hash: &str,
) -> Result<Option<StoredToken>, postgres::Error> {
    conn.query_opt(
        "SELECT id, user_id, expires_at, revoked_at IS NOT NULL, last_used_at
         FROM personal_access_token WHERE token_hash = $1",
        &[&token_hash],
    )?
    .map(|r| {
        Ok(StoredToken {
            id: r.try_get(0)?,
            user_id: Some(r.try_get(1)?),
            workspace_id: None,
            daemon_id: None,
            expires_at: r.try_get(2)?,
            revoked: r.try_get(3)?,
            last_used_at: r.try_get(4)?,
        })
    })
    .transpose()
}

pub fn find_daemon(
    conn: &mut Client,
    token_hash: &str,
) -> Result<Option<StoredToken>, postgres::Error> {
    conn.query_opt(
        "SELECT id, created_by, workspace_id, daemon_id, expires_at, revoked_at IS NOT NULL
         FROM daemon_token WHERE token_hash = $1",
        &[&token_hash],
    )?
    .map(|r| {
        Ok(StoredToken {
            id: r.try_get(0)?,
            user_id: r.try_get(1)?,
            workspace_id: Some(r.try_get(2)?),
            daemon_id: Some(r.try_get(3)?),
            expires_at: Some(r.try_get(4)?),
            revoked: r.try_get(5)?,
            last_used_at: None,
        })
    })
    .transpose()
}

pub fn touch_personal(
    conn: &mut Client,
    id: TokenId,
    at: Timestamp,
) -> Result<(), postgres::Error> {
    conn.execute(
        "UPDATE personal_access_token SET last_used_at = $2 WHERE id = $1",
        &[&id, &at],
    )?;
    Ok(())
}

/// The token with `token_hash`, in either table.
pub fn find_renewable(
    conn: &mut Client,
    token_hash: &str,
) -> Result<Option<RenewableToken>, postgres::Error> {
    for table in TokenTable::ALL {
        let row = conn.query_opt(
            &format!(
                "SELECT id, expires_at, revoked_at IS NOT NULL, coalesce(renewed_at, created_at)
                 FROM {} WHERE token_hash = $1",
                table.name()
            ),
            &[&token_hash],
        )?;
        if let Some(r) = row {
            return Ok(Some(RenewableToken {
                table,
                id: r.try_get(0)?,
                expires_at: r.try_get(1)?,
                revoked: r.try_get(2)?,
                since: r.try_get(3)?,
            }));
        }
    }
    Ok(None)
}

/// Sets a token's new expiry if it still has `expires_at` and is not
/// revoked; whether it did.
pub fn extend(
    conn: &mut Client,
    table: TokenTable,
    id: TokenId,
    expires_at: Timestamp,
    renewed: Timestamp,
    now: Timestamp,
) -> Result<bool, postgres::Error> {
    let changed = conn.execute(
        &format!(
            "UPDATE {} SET expires_at = $2, renewed_at = $3
             WHERE id = $1 AND revoked_at IS NULL AND expires_at = $4",
            table.name()
        ),
        &[&id, &renewed, &now, &expires_at],
    )?;
    Ok(changed > 0)
}

pub fn create_daemon(
    conn: &mut Client,
    workspace: WorkspaceId,
    daemon_id: &str,
    created_by: UserId,
    expires_at: Timestamp,
) -> Result<String, postgres::Error> {
    let token = generate(DAEMON_PREFIX);
    conn.execute(
        "INSERT INTO daemon_token
             (id, token_hash, workspace_id, daemon_id, created_by, expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &TokenId::new(),
            &hash(&token),
            &workspace,
            &daemon_id,
            &created_by,
            &expires_at,
            &Timestamp::now(),
        ],
    )?;
    Ok(token)
}

pub fn count_live_daemon(
    conn: &mut Client,
    workspace: WorkspaceId,
    user: UserId,
) -> Result<i64, postgres::Error> {
    conn.query_one(
        "SELECT count(*) FROM daemon_token
         WHERE created_by = $2 AND workspace_id = $1 AND revoked_at IS NULL AND expires_at > $3",
        &[&workspace, &user, &Timestamp::now()],
    )?
    .try_get(0)
}

pub fn create_task_token(
    conn: &mut Client,
    task: TaskId,
    workspace: WorkspaceId,
) -> Result<String, postgres::Error> {
    let token = generate(TASK_PREFIX);
    let now = Timestamp::now();
    let expires = now + Duration::hours(TASK_TOKEN_LIFETIME_HOURS);
    conn.execute(
        "INSERT INTO task_token (id, token_hash, task_id, workspace_id, expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &TaskTokenId::new(),
            &hash(&token),
            &task,
            &workspace,
            &expires,
            &now,
        ],
    )?;
    Ok(token)
}

pub fn find_task_token(
    conn: &mut Client,
    token_hash: &str,
) -> Result<Option<StoredTaskToken>, postgres::Error> {
    conn.query_opt(
        "SELECT tt.id, tt.task_id, tt.workspace_id, t.agent_id, t.status, tt.expires_at
         FROM task_token tt JOIN agent_task_queue t ON t.id = tt.task_id
         WHERE tt.token_hash = $1",
        &[&token_hash],
    )?
    .map(|r| {
        Ok(StoredTaskToken {
            id: r.try_get(0)?,
            task_id: r.try_get(1)?,
            workspace_id: r.try_get(2)?,
            agent_id: r.try_get(3)?,
            task_status: r.try_get(4)?,
            expires_at: r.try_get(5)?,
        })
    })
    .transpose()
}
