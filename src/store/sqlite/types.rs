//! How agenthub's value types are stored in SQLite: ids as hyphenated
//! text, word enums as their word, times as fixed-width millisecond UTC
//! text.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::domain::{
    AgentId, AgentStatus, BudgetId, BudgetPeriod, BudgetScope, EntityId, InvitationId,
    InvitationStatus, MemberId, ProbeId, ProbeKind, ProbeStatus, Role, RuntimeId, RuntimeMode,
    RuntimeStatus, TaskId, TaskStatus, TaskTokenId, Timestamp, TokenId, UsageId, UserId,
    Visibility, WebhookId, WorkspaceId,
};

/// Stores each id type as its hyphenated text, and reads it back strictly.
macro_rules! sql_ids {
    ($($name:ident),+) => {$(
        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.to_string()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                uuid::Uuid::try_parse(value.as_str()?)
                    .map($name::from_uuid)
                    .map_err(|e| FromSqlError::Other(Box::new(e)))
            }
        }
    )+};
}

sql_ids!(
    WorkspaceId,
    UserId,
    MemberId,
    RuntimeId,
    AgentId,
    TaskId,
    TokenId,
    TaskTokenId,
    InvitationId,
    ProbeId,
    UsageId,
    BudgetId,
    WebhookId
);

/// Stores each word enum as its word, and reads back only those words.
macro_rules! sql_words {
    ($($name:ident),+) => {$(
        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e: String| FromSqlError::Other(e.into()))
            }
        }
    )+};
}

sql_words!(
    Role,
    TaskStatus,
    RuntimeStatus,
    AgentStatus,
    RuntimeMode,
    Visibility,
    InvitationStatus,
    ProbeKind,
    ProbeStatus,
    BudgetScope,
    BudgetPeriod
);

/// How a time is stored: UTC, to the millisecond, fixed width, so that the
/// text sorts as the time does (indexes, `max()`, range conditions) and
/// reads the same in `sqlite3`. Existing files hold exactly this form.
const STORED_TIME: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// `time` in the stored form.
pub(in crate::store) fn stored_time(time: Timestamp) -> String {
    time.utc().format(STORED_TIME).to_string()
}

impl ToSql for Timestamp {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(stored_time(*self)))
    }
}

impl FromSql for Timestamp {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e: String| FromSqlError::Other(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    #[test]
    fn a_time_is_stored_in_the_fixed_width_form_existing_files_hold() {
        let conn = Connection::open_in_memory().expect("open");
        let at: Timestamp = "2026-11-23T19:42:52.1239Z".parse().expect("time");
        let stored: String = conn
            .query_row("SELECT ?1", [at], |r| r.get(0))
            .expect("select");
        assert_eq!(stored, "2026-11-23T19:42:52.123Z");
        let read: Timestamp = conn
            .query_row("SELECT '2026-11-23T19:42:52.123Z'", [], |r| r.get(0))
            .expect("select");
        assert_eq!(read.to_string(), "2026-11-23T19:42:52Z");
        assert_eq!(stored_time(read), stored);
    }
}
