//! How agenthub's value types are stored in PostgreSQL: ids as `uuid`, word
//! enums as their word in `text`, times as `timestamptz` to the millisecond
//! (the precision the SQLite engine keeps, so both engines sort, compare
//! and page alike).

use std::error::Error as StdError;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

use crate::domain::{
    AgentId, AgentStatus, BudgetId, BudgetPeriod, BudgetScope, EntityId, InvitationId,
    InvitationStatus, MemberId, ProbeId, ProbeKind, ProbeStatus, Role, RuntimeId, RuntimeMode,
    RuntimeStatus, TaskId, TaskStatus, TaskTokenId, Timestamp, TokenId, UsageId, UserId,
    Visibility, WebhookId, WorkspaceId,
};

type BoxError = Box<dyn StdError + Sync + Send>;

/// Stores each id type as a `uuid`.
macro_rules! pg_ids {
    ($($name:ident),+) => {$(
        impl ToSql for $name {
            fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
                self.uuid().to_sql(ty, out)
            }

            fn accepts(ty: &Type) -> bool {
                <uuid::Uuid as ToSql>::accepts(ty)
            }

            to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $name {
            fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
                uuid::Uuid::from_sql(ty, raw).map($name::from_uuid)
            }

            fn accepts(ty: &Type) -> bool {
                <uuid::Uuid as FromSql>::accepts(ty)
            }
        }
    )+};
}

pg_ids!(
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
macro_rules! pg_words {
    ($($name:ident),+) => {$(
        impl ToSql for $name {
            fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
                self.as_str().to_sql(ty, out)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as ToSql>::accepts(ty)
            }

            to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $name {
            fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
                <&str as FromSql>::from_sql(ty, raw)?
                    .parse()
                    .map_err(|e: String| e.into())
            }

            fn accepts(ty: &Type) -> bool {
                <&str as FromSql>::accepts(ty)
            }
        }
    )+};
}

pg_words!(
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

/// `time` to the millisecond, as both engines keep it.
pub(in crate::store) fn stored(time: Timestamp) -> DateTime<Utc> {
    let utc = time.utc();
    utc.duration_trunc(TimeDelta::milliseconds(1))
        .unwrap_or(utc)
}

impl ToSql for Timestamp {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        stored(*self).to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <DateTime<Utc> as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Timestamp {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        DateTime::<Utc>::from_sql(ty, raw).map(Timestamp::from_utc)
    }

    fn accepts(ty: &Type) -> bool {
        <DateTime<Utc> as FromSql>::accepts(ty)
    }
}
