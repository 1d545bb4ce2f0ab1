//! The value types the store and the API share: one id type per entity,
//! enums for statuses, roles, modes and visibility, and `Timestamp`.

use std::fmt;
use std::ops::{Add, Sub};
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Parses the one spelling of an id: the hyphenated 36-character form (any
/// case), the form the API hands out; `{…}`, `urn:uuid:` and bare-hex
/// spellings are refused so one id has exactly one spelling.
pub fn parse_uuid(s: &str) -> Result<Uuid, String> {
    if s.len() != 36 {
        return Err(format!("{s:?} is not a UUID"));
    }
    Uuid::try_parse(s).map_err(|e| format!("{s:?} is not a UUID: {e}"))
}

/// A JSON string read as a `T` through its `FromStr`: the one spelling of
/// an id or a word enum, with the parse's own message on anything else.
fn parse_text<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromStr<Err = String>,
{
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    text.parse().map_err(serde::de::Error::custom)
}

/// What every id type is: a UUID under a name. For the few places that
/// take any id (a pagination cursor holds the id of whatever it lists).
///
/// One entity's id is never another's:
///
/// ```compile_fail
/// use agenthub::domain::{AgentId, RuntimeId};
/// let runtime: RuntimeId = AgentId::new();
/// ```
pub trait EntityId: Copy {
    fn uuid(self) -> Uuid;
    fn from_uuid(uuid: Uuid) -> Self;
}

/// Declares one id type per entity. Each is a UUID, stored as canonical
/// hyphenated text so the database reads the same in `sqlite3` as in the
/// API; parsing is strict (see [`parse_uuid`]): anything that is not a UUID
/// is refused at the edge, never mapped to another id. The types do not
/// mix: a runtime id where an agent id belongs does not compile.
macro_rules! entity_ids {
    ($($(#[$doc:meta])* $name:ident;)+) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> $name {
                $name(Uuid::now_v7())
            }
        }

        impl EntityId for $name {
            fn uuid(self) -> Uuid {
                self.0
            }

            fn from_uuid(uuid: Uuid) -> $name {
                $name(uuid)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<$name, String> {
                parse_uuid(s).map($name)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D>(deserializer: D) -> Result<$name, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                parse_text(deserializer)
            }
        }
    )+};
}

entity_ids! {
    /// A workspace.
    WorkspaceId;
    /// A user (a person; the same in every workspace they belong to).
    UserId;
    /// A membership: one user in one workspace.
    MemberId;
    /// A runtime: one agent CLI on one daemon's machine.
    RuntimeId;
    /// An agent, bound to a runtime.
    AgentId;
    /// A task queued for an agent.
    TaskId;
    /// A personal access token or a daemon token.
    TokenId;
    /// A task-scoped token, minted when its task is claimed.
    TaskTokenId;
    /// An invitation to a workspace.
    InvitationId;
    /// A ping or an update request to a daemon.
    ProbeId;
    /// A custom runtime profile of the reference's daemon (agenthub only
    /// names the runtime of one that failed after it).
    ProfileId;
    /// A chat session of the reference's (agenthub has none).
    ChatSessionId;
    /// An autopilot run of the reference's (agenthub has none).
    AutopilotRunId;
    /// A usage row (a task's usage of a model, a daemon's day total); never
    /// leaves the store.
    UsageId;
    /// A spending limit.
    BudgetId;
    /// An outbound webhook endpoint of a workspace.
    WebhookId;
}

/// Declares an enum whose values are one lower-case word each: the word is
/// its only spelling, in JSON (`Serialize`/`Deserialize`), in the database
/// and in `as_str`; `FromStr` refuses any other text with `$error`, in
/// which `$other` names the refused text.
macro_rules! word_enums {
    ($(
        $(#[$doc:meta])*
        $name:ident, |$other:ident| $error:expr, {
            $($(#[$vdoc:meta])* $variant:ident => $word:literal,)+
        }
    )+) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<$name, String> {
                match s {
                    $($word => Ok($name::$variant),)+
                    $other => Err($error),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D>(deserializer: D) -> Result<$name, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                parse_text(deserializer)
            }
        }
    )+};
}

word_enums! {
    /// A member's role in a workspace.
    Role,
    |other| format!("invalid role {other:?}: must be owner, admin or member"),
    {
        Owner => "owner",
        Admin => "admin",
        Member => "member",
    }

    /// Where a task is in its life, in order: waiting, handed to a daemon,
    /// under way, then one of three ends.
    TaskStatus,
    |_other| "status must be queued, dispatched, running, completed, failed or cancelled".to_string(),
    {
        Queued => "queued",
        Dispatched => "dispatched",
        Running => "running",
        Completed => "completed",
        Failed => "failed",
        Cancelled => "cancelled",
    }

    /// Whether a runtime's daemon is heard from.
    RuntimeStatus,
    |_other| "status must be online or offline".to_string(),
    {
        Online => "online",
        Offline => "offline",
    }

    /// What an agent is doing: `idle` and `working` follow its tasks; the
    /// others are set by people.
    AgentStatus,
    |_other| "status must be idle, working, blocked, error or offline".to_string(),
    {
        Idle => "idle",
        Working => "working",
        Blocked => "blocked",
        Error => "error",
        Offline => "offline",
    }

    /// Where a runtime runs: on a developer's machine, or hosted.
    RuntimeMode,
    |_other| "runtime_mode must be local or cloud".to_string(),
    {
        Local => "local",
        Cloud => "cloud",
    }

    /// Where an invitation stands. Only pending ones can be answered.
    InvitationStatus,
    |other| format!("invalid invitation status {other:?}"),
    {
        Pending => "pending",
        Accepted => "accepted",
        Declined => "declined",
        Revoked => "revoked",
    }

    /// What a probe asks of a daemon: answer a ping, or update itself.
    ProbeKind,
    |_other| "kind must be ping or update".to_string(),
    {
        Ping => "ping",
        Update => "update",
    }

    /// Where a ping or update stands: waiting for the daemon's next
    /// heartbeat, handed to it, then one of three ends (`timeout` when the
    /// daemon never answered in time).
    ProbeStatus,
    |_other| "status must be pending, running, completed, failed or timeout".to_string(),
    {
        Pending => "pending",
        Running => "running",
        Completed => "completed",
        Failed => "failed",
        Timeout => "timeout",
    }

    /// Who sees an agent: every member, or its owner and the workspace's
    /// owners and admins.
    Visibility,
    |_other| "visibility must be workspace or private".to_string(),
    {
        Workspace => "workspace",
        Private => "private",
    }

    /// What a budget charges: the whole workspace, one agent's tasks, or
    /// the tasks one member queued.
    BudgetScope,
    |_other| "scope must be workspace, agent or member".to_string(),
    {
        Workspace => "workspace",
        Agent => "agent",
        Member => "member",
    }

    /// How long a budget's period is, in the workspace's time zone.
    BudgetPeriod,
    |_other| "period must be daily or monthly".to_string(),
    {
        Daily => "daily",
        Monthly => "monthly",
    }
}

impl Role {
    /// Owners and admins manage the workspace and any runtime in it.
    pub fn is_manager(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

impl ProbeKind {
    /// How long a daemon has to answer before the probe times out.
    pub fn timeout(self) -> Duration {
        match self {
            ProbeKind::Ping => Duration::seconds(60),
            ProbeKind::Update => Duration::seconds(120),
        }
    }
}

impl ProbeStatus {
    /// Not ended yet: waiting for the daemon or handed to it.
    pub fn is_open(self) -> bool {
        matches!(self, ProbeStatus::Pending | ProbeStatus::Running)
    }
}

impl TaskStatus {
    /// Ended: completed, failed or cancelled.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }

    /// Handed to a daemon and not ended: what holds one of its agent's
    /// slots and keeps its task token live.
    pub fn is_active(self) -> bool {
        matches!(self, TaskStatus::Dispatched | TaskStatus::Running)
    }
}

/// A moment, in UTC. The API shows it in RFC 3339 to the whole second
/// (`2026-11-23T19:42:52Z`: `Display` and `Serialize`); the store keeps it
/// to the millisecond, in a form of its own engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp(Utc::now())
    }

    pub fn from_utc(time: DateTime<Utc>) -> Timestamp {
        Timestamp(time)
    }

    pub fn utc(self) -> DateTime<Utc> {
        self.0
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, by: Duration) -> Timestamp {
        Timestamp(self.0 + by)
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;

    fn sub(self, by: Duration) -> Timestamp {
        Timestamp(self.0 - by)
    }
}

/// How long after `earlier` this is.
impl Sub for Timestamp {
    type Output = Duration;

    fn sub(self, earlier: Timestamp) -> Duration {
        self.0 - earlier.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.format("%Y-%m-%dT%H:%M:%SZ").fmt(f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What [`Serialize`] writes, and any other RFC 3339 time.
impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Any RFC 3339 time, in any offset (tests and tools name moments so).
impl FromStr for Timestamp {
    type Err = String;

    fn from_str(s: &str) -> Result<Timestamp, String> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| Timestamp(t.with_timezone(&Utc)))
            .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips_in_canonical_form() {
        let id = RuntimeId::new();
        assert_eq!(id.to_string().parse::<RuntimeId>().unwrap(), id);
        assert_eq!(id.to_string().len(), 36);
    }

    #[test]
    fn id_refuses_other_spellings() {
        let id = TaskId::new();
        let simple = id.to_string().replace('-', "");
        assert!(simple.parse::<TaskId>().is_err());
        assert!(format!("{{{id}}}").parse::<TaskId>().is_err());
        assert!("not-a-uuid".parse::<TaskId>().is_err());
        assert!(id.to_string().to_uppercase().parse::<TaskId>().is_ok());
    }

    #[test]
    fn an_id_deserializes_only_from_its_one_spelling() {
        let id = AgentId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<AgentId>(&json).unwrap(), id);
        let bare = format!("\"{}\"", id.uuid().simple());
        assert!(serde_json::from_str::<AgentId>(&bare).is_err());
    }

    #[test]
    fn a_word_enum_has_one_spelling_everywhere() {
        for status in TaskStatus::ALL {
            let json = serde_json::to_string(status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(status.as_str().parse::<TaskStatus>().as_ref(), Ok(status));
        }
        assert_eq!(
            "Queued".parse::<TaskStatus>(),
            Err(
                "status must be queued, dispatched, running, completed, failed or cancelled".into()
            )
        );
        assert_eq!(
            "boss".parse::<Role>(),
            Err("invalid role \"boss\": must be owner, admin or member".into())
        );
        assert!(serde_json::from_str::<Visibility>("\"public\"").is_err());
    }

    #[test]
    fn a_timestamp_shows_whole_seconds_in_utc() {
        let t: Timestamp = "2026-11-23T20:42:52.987+01:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-23T19:42:52Z");
        assert_eq!(
            serde_json::to_string(&Some(t)).unwrap(),
            "\"2026-11-23T19:42:52Z\""
        );
        assert_eq!((t + Duration::days(1)) - t, Duration::days(1));
        assert!("yesterday".parse::<Timestamp>().is_err());
    }
}
