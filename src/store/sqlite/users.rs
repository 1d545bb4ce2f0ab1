//! `user` rows.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::Id;
#[allow(unused_imports)]
use crate::store::users::*;
use crate::store::Error;
use crate::store::{api_time, now};

const COLUMNS: &str = "id, name, email, created_at, updated_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        name: row.get(1)?,
        email: row.get(2)?,
        created_at: api_time(&row.get::<_, String>(3)?),
        updated_at: api_time(&row.get::<_, String>(4)?),
    })
}

pub fn insert(conn: &Connection, email: &str, name: &str) -> Result<User, Error> {
    if find_by_email(conn, email)?.is_some() {
        return Err(Error::conflict(format!(
            "a user with email {email} already exists"
        )));
    }
    let id = Id::new();
    let now = now();
    conn.execute(
        r#"INSERT INTO "user" (id, email, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)"#,
        params![id, email, name, now],
    )?;
    get(conn, id)?.ok_or_else(|| Error::internal("inserted user vanished"))
}

pub fn get(conn: &Connection, id: Id) -> rusqlite::Result<Option<User>> {
    conn.query_row(
        &format!(r#"SELECT {COLUMNS} FROM "user" WHERE id = ?1"#),
        [id],
        from_row,
    )
    .optional()
}

pub fn find_by_email(conn: &Connection, email: &str) -> rusqlite::Result<Option<User>> {
    conn.query_row(
        &format!(r#"SELECT {COLUMNS} FROM "user" WHERE email = ?1"#),
        [email],
        from_row,
    )
    .optional()
}
