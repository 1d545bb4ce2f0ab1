//! `user` rows.

use postgres::Row;

use super::Client;

use crate::domain::{Timestamp, UserId};
use crate::store::users::*;
use crate::store::Error;

const COLUMNS: &str = "id, name, email, created_at, updated_at";

fn from_row(row: &Row) -> Result<User, postgres::Error> {
    Ok(User {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        email: row.try_get(2)?,
        created_at: row.try_get(3)?,
        updated_at: row.try_get(4)?,
    })
}

/// The unique index on `lower(email)` (SQLite: the UNIQUE NOCASE column)
/// decides, also between concurrent inserts: `ON CONFLICT` names its
/// expression, waits for a concurrent insert of the address and does
/// nothing if it commits, so the loser changes nothing and raises no
/// error.
pub fn insert(conn: &mut Client, email: &str, name: &str) -> Result<User, Error> {
    let id = UserId::new();
    let now = Timestamp::now();
    let added = conn.execute(
        r#"INSERT INTO "user" (id, email, name, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $4)
           ON CONFLICT ((lower(email))) DO NOTHING"#,
        &[&id, &email, &name, &now],
    )?;
    if added == 0 {
        return Err(Error::conflict(format!(
            "a user with email {email} already exists"
        )));
    }
    get(conn, id)?.ok_or_else(|| Error::internal("inserted user vanished"))
}

/// Takes the user's row lock (`FOR UPDATE`) until the transaction ends:
/// concurrent writers for one user that lock it take turns, and each
/// statement after it (READ COMMITTED) sees what the previous holder
/// committed.
pub fn lock(conn: &mut Client, id: UserId) -> Result<(), postgres::Error> {
    conn.execute(r#"SELECT 1 FROM "user" WHERE id = $1 FOR UPDATE"#, &[&id])?;
    Ok(())
}

pub fn get(conn: &mut Client, id: UserId) -> Result<Option<User>, postgres::Error> {
    conn.query_opt(
        &format!(r#"SELECT {COLUMNS} FROM "user" WHERE id = $1"#),
        &[&id],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Case-insensitively, on the `lower(email)` index; `lower` of the
/// parameter folds as the column's "C" collation does (ASCII only, as
/// SQLite's NOCASE), whatever the database's default collation.
pub fn find_by_email(conn: &mut Client, email: &str) -> Result<Option<User>, postgres::Error> {
    conn.query_opt(
        &format!(
            r#"SELECT {COLUMNS} FROM "user" WHERE lower(email) = lower($1::text COLLATE "C")"#
        ),
        &[&email],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}
