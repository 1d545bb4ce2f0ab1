//! Pings and update requests: short-lived requests from the UI to a daemon,
//! delivered on the daemon's next heartbeat and answered with a result.
//!
//! They live in memory, not in the database: each lasts at most a couple of
//! minutes (ping 60 s, update 120 s, then `timeout`), and a restart of the
//! server ends every daemon conversation anyway. Finished ones are kept for
//! a while so the UI can read the outcome, then forgotten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::domain::Id;
use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ping,
    Update,
}

impl Kind {
    fn timeout(self) -> Duration {
        match self {
            Kind::Ping => Duration::seconds(60),
            Kind::Update => Duration::seconds(120),
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Ping => "ping",
            Kind::Update => "update",
        }
    }
}

/// How long a finished probe stays readable.
const RETAIN: i64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Running,
    Completed,
    Failed,
    Timeout,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
        }
    }

    fn is_open(self) -> bool {
        matches!(self, Status::Pending | Status::Running)
    }
}

/// A ping or an update request, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub id: Id,
    pub runtime_id: Id,
    #[serde(skip)]
    pub kind: Kind,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    pub output: String,
    pub error: String,
    pub duration_ms: Option<i64>,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// What a daemon reports when it is done (or, for updates, progressing).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    pub output: String,
    pub error: String,
    pub duration_ms: Option<i64>,
}

#[derive(Clone, Default)]
pub struct Probes {
    inner: Arc<Mutex<HashMap<Id, Probe>>>,
}

impl Probes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Id, Probe>> {
        // the map holds plain values; a panic elsewhere cannot corrupt it
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies timeouts and forgets long-finished probes.
    fn expire(map: &mut HashMap<Id, Probe>, now: DateTime<Utc>) {
        for probe in map.values_mut() {
            if probe.status.is_open() && now - probe.created_at > probe.kind.timeout() {
                probe.status = Status::Timeout;
                probe.error = format!(
                    "{} timed out after {} s",
                    probe.kind.noun(),
                    probe.kind.timeout().num_seconds()
                );
                probe.updated_at = now;
            }
        }
        map.retain(|_, p| now - p.updated_at < Duration::seconds(RETAIN));
    }

    /// Queues a probe for `runtime`. Only one update may be open per
    /// runtime (409 otherwise); pings may pile up.
    pub fn create(
        &self,
        kind: Kind,
        runtime: Id,
        target_version: Option<String>,
    ) -> Result<Probe, ApiError> {
        let now = Utc::now();
        let mut map = self.lock();
        Self::expire(&mut map, now);
        if kind == Kind::Update
            && map
                .values()
                .any(|p| p.kind == kind && p.runtime_id == runtime && p.status.is_open())
        {
            return Err(ApiError::conflict(
                "an update is already pending for this runtime",
            ));
        }
        let probe = Probe {
            id: Id::new(),
            runtime_id: runtime,
            kind,
            status: Status::Pending,
            target_version,
            output: String::new(),
            error: String::new(),
            duration_ms: None,
            created_at: now,
            updated_at: now,
        };
        map.insert(probe.id, probe.clone());
        Ok(probe)
    }

    /// The probe `id` of `runtime`, if there is one of this kind.
    pub fn get(&self, kind: Kind, runtime: Id, id: Id) -> Option<Probe> {
        let mut map = self.lock();
        Self::expire(&mut map, Utc::now());
        map.get(&id)
            .filter(|p| p.kind == kind && p.runtime_id == runtime)
            .cloned()
    }

    /// Hands the oldest pending probe of `runtime` to its daemon (on a
    /// heartbeat) and marks it running.
    pub fn take_pending(&self, kind: Kind, runtime: Id) -> Option<Probe> {
        let now = Utc::now();
        let mut map = self.lock();
        Self::expire(&mut map, now);
        let probe = map
            .values_mut()
            .filter(|p| p.kind == kind && p.runtime_id == runtime && p.status == Status::Pending)
            .min_by_key(|p| p.created_at)?;
        probe.status = Status::Running;
        probe.updated_at = now;
        Some(probe.clone())
    }

    /// Records a daemon's result for probe `id` of `runtime`. A probe of
    /// another runtime is 404; one that already finished (or timed out) is
    /// 409.
    pub fn finish(
        &self,
        kind: Kind,
        runtime: Id,
        id: Id,
        outcome: Outcome,
    ) -> Result<Probe, ApiError> {
        let now = Utc::now();
        let mut map = self.lock();
        Self::expire(&mut map, now);
        let probe = map
            .get_mut(&id)
            .filter(|p| p.kind == kind && p.runtime_id == runtime)
            .ok_or_else(|| ApiError::not_found(format!("{} not found", kind.noun())))?;
        if !probe.status.is_open() {
            return Err(ApiError::conflict(format!(
                "{} already finished with status {}",
                kind.noun(),
                probe.status.as_str()
            )));
        }
        probe.status = outcome.status;
        probe.output = outcome.output;
        probe.error = outcome.error;
        probe.duration_ms = outcome.duration_ms.or(probe.duration_ms);
        probe.updated_at = now;
        Ok(probe.clone())
    }

    /// Ages every probe by `by` (tests use it to reach the timeouts without
    /// waiting).
    #[doc(hidden)]
    pub fn age_all(&self, by: Duration) {
        for probe in self.lock().values_mut() {
            probe.created_at -= by;
            probe.updated_at -= by;
        }
    }
}
