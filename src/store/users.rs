//! `user` rows.

use crate::domain::Id;
use serde::Serialize;

use super::{dispatch, Conn, Result};

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: Id,
    pub name: String,
    pub email: String,
    pub created_at: String,
    pub updated_at: String,
}

/// Creates a user; 409 when the email (case-insensitively) is taken.
pub fn insert(conn: &Conn<'_>, email: &str, name: &str) -> Result<User> {
    dispatch!(conn, users::insert(email, name))
}

pub fn get(conn: &Conn<'_>, id: Id) -> Result<Option<User>> {
    dispatch!(conn, users::get(id))
}

pub fn find_by_email(conn: &Conn<'_>, email: &str) -> Result<Option<User>> {
    dispatch!(conn, users::find_by_email(email))
}
