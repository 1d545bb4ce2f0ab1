//! `user` rows.

use crate::domain::{Timestamp, UserId};
use serde::Serialize;

use super::{dispatch, Conn, Result};

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub email: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Creates a user; 409 when the email (case-insensitively) is taken. The
/// schema's UNIQUE email decides, so of concurrent inserts of one address
/// exactly one succeeds.
pub fn insert(conn: &Conn<'_>, email: &str, name: &str) -> Result<User> {
    dispatch!(conn, users::insert(email, name))
}

/// Holds `user`'s row against concurrent writers until the transaction
/// ends: a rule over several rows of the user (how many live tokens they
/// have) is checked after it, so concurrent writes for one user take turns
/// on an engine with row locks.
pub fn lock(conn: &Conn<'_>, user: UserId) -> Result<()> {
    dispatch!(conn, users::lock(user))
}

pub fn get(conn: &Conn<'_>, id: UserId) -> Result<Option<User>> {
    dispatch!(conn, users::get(id))
}

pub fn find_by_email(conn: &Conn<'_>, email: &str) -> Result<Option<User>> {
    dispatch!(conn, users::find_by_email(email))
}
