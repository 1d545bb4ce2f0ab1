//! Small value types shared by the store and the API.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A row id: a UUID, stored as canonical hyphenated text so the database
/// reads the same in `sqlite3` as in the API. Parsing is strict: anything
/// that is not a UUID is refused at the edge, never mapped to another id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Id(Uuid);

impl Id {
    pub fn new() -> Id {
        Id(Uuid::new_v4())
    }

    pub fn from_uuid(uuid: Uuid) -> Id {
        Id(uuid)
    }
}

impl Default for Id {
    fn default() -> Self {
        Id::new()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for Id {
    type Err = String;

    /// Accepts only the hyphenated 36-character form (any case), the form
    /// the API hands out; `{…}`, `urn:uuid:` and bare-hex spellings are
    /// refused so one id has exactly one spelling.
    fn from_str(s: &str) -> Result<Id, String> {
        if s.len() != 36 {
            return Err(format!("{s:?} is not a UUID"));
        }
        Uuid::try_parse(s)
            .map(Id)
            .map_err(|e| format!("{s:?} is not a UUID: {e}"))
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Id, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
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
        let id = Id::new();
        assert_eq!(id.to_string().parse::<Id>().unwrap(), id);
        assert_eq!(id.to_string().len(), 36);
    }

    #[test]
    fn id_refuses_other_spellings() {
        let id = Id::new();
        let simple = id.to_string().replace('-', "");
        assert!(simple.parse::<Id>().is_err());
        assert!(format!("{{{id}}}").parse::<Id>().is_err());
        assert!("not-a-uuid".parse::<Id>().is_err());
        assert!(id.to_string().to_uppercase().parse::<Id>().is_ok());
    }
}
