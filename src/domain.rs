//! Small value types shared by the store and the API.

use std::fmt;
use std::str::FromStr;

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
                $name(Uuid::new_v4())
            }

            /// The bare UUID, for what takes any id (pagination cursors).
            pub fn uuid(self) -> Uuid {
                self.0
            }

            pub fn from_uuid(uuid: Uuid) -> $name {
                $name(uuid)
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
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
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
}

/// A member's role in a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Owners and admins manage the workspace and any runtime in it.
    pub fn is_manager(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(format!(
                "invalid role {other:?}: must be owner, admin or member"
            )),
        }
    }
}

/// Every status a task can have, in the order of its life.
pub const TASK_STATUSES: [&str; 6] = [
    "queued",
    "dispatched",
    "running",
    "completed",
    "failed",
    "cancelled",
];

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
}
