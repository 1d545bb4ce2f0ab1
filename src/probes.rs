//! Pings and update requests: short-lived requests from the UI to a daemon,
//! delivered on the daemon's next heartbeat and answered with a result.
//!
//! They live in memory, not in the database: each lasts at most a couple of
//! minutes (ping 60 s, update 120 s, then `timeout`), and a restart of the
//! server ends every daemon conversation anyway. Finished ones are kept for
//! a while so the UI can read the outcome, then forgotten.
//!
//! Memory is bounded: at most [`MAX_KEPT`] probes per runtime and kind and
//! [`MAX_TOTAL`] in all (the oldest finished one makes room for a new one;
//! when all are still open a new one is refused with 429), a daemon's
//! output and error are kept up to [`MAX_TEXT`] bytes each, and a target
//! version up to [`MAX_TARGET_VERSION`] bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Duration;
use serde::Serialize;

use crate::domain::{ProbeId, RuntimeId, Timestamp};
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

/// Probes kept per runtime and kind, open and finished together.
pub const MAX_KEPT: usize = 20;

/// Probes kept in all, open and finished, whatever the number of runtimes:
/// a member with many runtimes cannot multiply [`MAX_KEPT`] without end.
/// At most about 4096 × 2 × [`MAX_TEXT`] = 64 MiB of daemon text.
pub const MAX_TOTAL: usize = 4096;

/// Bytes of a daemon's output (or error) kept per probe; the rest is cut
/// off and [`TRUNCATED`] appended, so the reader sees that it was. A ping
/// or update says whether it worked, not a whole log.
pub const MAX_TEXT: usize = 8 * 1024;

pub const TRUNCATED: &str = "\n[truncated: longer than 8 KiB]";

/// Longest `target_version` of an update, in bytes: a version string.
pub const MAX_TARGET_VERSION: usize = 128;

/// `text` cut to at most [`MAX_TEXT`] bytes (marker included) at a
/// character boundary: for text daemons report that people only read.
pub fn clip(mut text: String) -> String {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT - TRUNCATED.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(TRUNCATED);
    text
}

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
    pub id: ProbeId,
    pub runtime_id: RuntimeId,
    #[serde(skip)]
    pub kind: Kind,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    pub output: String,
    pub error: String,
    pub duration_ms: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
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
    inner: Arc<Mutex<HashMap<ProbeId, Probe>>>,
}

impl Probes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProbeId, Probe>> {
        // the map holds plain values; a panic elsewhere cannot corrupt it
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies timeouts and forgets long-finished probes.
    fn expire(map: &mut HashMap<ProbeId, Probe>, now: Timestamp) {
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

    /// Makes room for one more probe of `kind` on `runtime` by forgetting
    /// the oldest finished ones; 429 when [`MAX_KEPT`] of them, or
    /// [`MAX_TOTAL`] probes in all, are still open, so daemons that never
    /// answer cannot fill the server's memory.
    fn make_room(
        map: &mut HashMap<ProbeId, Probe>,
        kind: Kind,
        runtime: RuntimeId,
    ) -> Result<(), ApiError> {
        let mine = |p: &Probe| p.kind == kind && p.runtime_id == runtime;
        while map.values().filter(|p| mine(p)).count() >= MAX_KEPT {
            Self::forget_oldest_finished(map, mine).ok_or_else(|| {
                ApiError::TooManyRequests(format!(
                    "too many {}s pending for this runtime",
                    kind.noun()
                ))
            })?;
        }
        while map.len() >= MAX_TOTAL {
            Self::forget_oldest_finished(map, |_| true).ok_or_else(|| {
                ApiError::TooManyRequests(
                    "too many pings and updates pending; try again shortly".to_string(),
                )
            })?;
        }
        Ok(())
    }

    /// Forgets the oldest finished probe among those `matching`; `None`
    /// when every one of them is still open.
    fn forget_oldest_finished(
        map: &mut HashMap<ProbeId, Probe>,
        matching: impl Fn(&Probe) -> bool,
    ) -> Option<()> {
        let oldest = map
            .values()
            .filter(|p| matching(p) && !p.status.is_open())
            .min_by_key(|p| p.created_at)?
            .id;
        map.remove(&oldest).map(|_| ())
    }

    /// Queues a probe for `runtime`. Only one update may be open per
    /// runtime (409 otherwise); pings may pile up to [`MAX_KEPT`] (429).
    pub fn create(
        &self,
        kind: Kind,
        runtime: RuntimeId,
        target_version: Option<String>,
    ) -> Result<Probe, ApiError> {
        let now = Timestamp::now();
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
        Self::make_room(&mut map, kind, runtime)?;
        let probe = Probe {
            id: ProbeId::new(),
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
    pub fn get(&self, kind: Kind, runtime: RuntimeId, id: ProbeId) -> Option<Probe> {
        let mut map = self.lock();
        Self::expire(&mut map, Timestamp::now());
        map.get(&id)
            .filter(|p| p.kind == kind && p.runtime_id == runtime)
            .cloned()
    }

    /// Hands the oldest pending probe of `runtime` to its daemon (on a
    /// heartbeat) and marks it running.
    pub fn take_pending(&self, kind: Kind, runtime: RuntimeId) -> Option<Probe> {
        let now = Timestamp::now();
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

    /// Records a daemon's result for probe `id` of `runtime`, its output and
    /// error clipped to [`MAX_TEXT`]. A probe of another runtime is 404; one
    /// that already finished (or timed out) is 409.
    pub fn finish(
        &self,
        kind: Kind,
        runtime: RuntimeId,
        id: ProbeId,
        outcome: Outcome,
    ) -> Result<Probe, ApiError> {
        let now = Timestamp::now();
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
        probe.output = clip(outcome.output);
        probe.error = clip(outcome.error);
        probe.duration_ms = outcome.duration_ms.or(probe.duration_ms);
        probe.updated_at = now;
        Ok(probe.clone())
    }

    /// Ages every probe by `by` (tests use it to reach the timeouts without
    /// waiting).
    #[doc(hidden)]
    pub fn age_all(&self, by: Duration) {
        for probe in self.lock().values_mut() {
            probe.created_at = probe.created_at - by;
            probe.updated_at = probe.updated_at - by;
        }
    }
}
