//! Price overrides (`pricing_override`): what a workspace's owners/admins
//! set for a canonical (provider, model) from a date on, over the built-in
//! table of [`crate::pricing`].

use chrono::NaiveDate;

use crate::domain::{Timestamp, UserId, WorkspaceId};
use crate::pricing::PriceRow;

use super::{dispatch, Conn, Result};

/// Most overrides one workspace may hold: `GET /api/pricing` lists them
/// all with the built-in table.
pub const MAX_OVERRIDES: i64 = 1000;

/// The workspace's overrides, by provider, model and date.
pub fn overrides(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<Vec<PriceRow>> {
    dispatch!(conn, pricing::overrides(workspace))
}

/// Sets the override of (provider, model, effective_from), replacing its
/// prices if there is one; returns whether it is new.
pub fn put(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    row: &PriceRow,
    by: UserId,
    at: Timestamp,
) -> Result<bool> {
    dispatch!(conn, pricing::put(workspace, row, by, at))
}

/// Deletes the override of (provider, model, effective_from); returns
/// whether there was one.
pub fn delete(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    provider: &str,
    model: &str,
    effective_from: NaiveDate,
) -> Result<bool> {
    dispatch!(
        conn,
        pricing::delete(workspace, provider, model, effective_from)
    )
}
