//! `user` rows.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::{Timestamp, UserId};
use crate::store::users::*;
use crate::store::Error;

const COLUMNS: &str = "id, name, email, created_at, updated_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        name: row.get(1)?,
        email: row.get(2)?,
        created_at: row.get(3)?,
        updated_at: row.get(4)?,
    })
}

pub fn insert(conn: &Connection, email: &str, name: &str) -> Result<User, Error> {
    let id = UserId::new();
    let now = Timestamp::now();
    // the UNIQUE (NOCASE) email column decides, also between concurrent
    // inserts; the loser changes nothing
    let added = conn.prepare_cached(r#"INSERT INTO "user" (id, email, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
           ON CONFLICT (email) DO NOTHING"#)?.execute(params![id, email, name, now])?;
    if added == 0 {
        return Err(Error::conflict(format!(
            "a user with email {email} already exists"
        )));
    }
    get(conn, id)?.ok_or_else(|| Error::internal("inserted user vanished"))
}

/// Nothing to take: a SQLite write transaction holds the whole file.
pub fn lock(_conn: &Connection, _id: UserId) -> rusqlite::Result<()> {
    Ok(())
}

pub fn get(conn: &Connection, id: UserId) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached(&format!(r#"SELECT {COLUMNS} FROM "user" WHERE id = ?1"#))?
        .query_row([id], from_row)
        .optional()
}

pub fn find_by_email(conn: &Connection, email: &str) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached(&format!(r#"SELECT {COLUMNS} FROM "user" WHERE email = ?1"#))?
        .query_row([email], from_row)
        .optional()
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::store::sqlite::{scratch_connection, scratch_database};

    #[test]
    fn an_email_taken_by_a_concurrent_insert_is_the_documented_conflict() {
        let (_dir, path) = scratch_database();
        let conn = scratch_connection(&path);
        // another transaction's insert of the address lands just before
        // this one's (after any look-up this one could have made)
        conn.execute_batch(
            r#"CREATE TEMP TRIGGER concurrent_signup BEFORE INSERT ON main."user"
               WHEN NEW.name = 'second'
               BEGIN
                   INSERT INTO "user" (id, email, name, created_at, updated_at)
                   VALUES ('00000000-0000-4000-8000-000000000001', lower(NEW.email), 'first',
                           NEW.created_at, NEW.created_at);
               END;"#,
        )
        .expect("trigger");
        let err = insert(&conn, "Ada@Example.com", "second").expect_err("taken");
        assert!(matches!(err, Error::Conflict(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "a user with email Ada@Example.com already exists"
        );
        let names: Vec<String> = conn
            .prepare(r#"SELECT name FROM "user""#)
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("users");
        assert_eq!(names, ["first"]);
    }
}
