//! Pings and update requests to a daemon ("probes"): the UI queues one,
//! the daemon's next heartbeat takes it, the daemon reports its result.
//! They live in the database (`runtime_probe`), so every node sharing it
//! sees the same ones and they survive a restart.
//!
//! Rules kept here, the same on every engine:
//! * A probe the daemon does not answer in time ([`ProbeKind::timeout`]:
//!   ping 60 s, update 120 s, counted from its creation) reads as
//!   `timeout`, with the time it timed out as `updated_at`. The stored row
//!   is left as it was: the rule is applied on every read, so no job has to
//!   run for a probe to time out, and a timed-out one is never handed to a
//!   daemon nor finished.
//! * A finished (or timed-out) probe stays readable for [`RETAIN`] seconds,
//!   then reads as gone; the sweeper deletes such rows ([`forget_old`]).
//! * Bounds: at most [`MAX_KEPT`] probes per runtime and kind and
//!   [`MAX_TOTAL`] in all, open and finished together. A new one makes
//!   room by forgetting the oldest finished ones; when those are all still
//!   open it is refused. At most one update is open per runtime.

use chrono::Duration;
use serde::Serialize;

use crate::domain::{ProbeId, ProbeKind, ProbeStatus, RuntimeId, Timestamp};

use super::sweeps::BATCH;
use super::{dispatch, Conn, Result};

/// How long a finished probe stays readable, in seconds.
pub const RETAIN: i64 = 3600;

/// Probes kept per runtime and kind, open and finished together.
pub const MAX_KEPT: i64 = 20;

/// Probes kept in all, open and finished, whatever the number of runtimes:
/// a member with many runtimes cannot multiply [`MAX_KEPT`] without end.
/// With the API's 8 KiB of output and of error per probe, at most about
/// 64 MiB of daemon text.
pub const MAX_TOTAL: i64 = 4096;

/// A ping or an update request, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub id: ProbeId,
    pub runtime_id: RuntimeId,
    #[serde(skip)]
    pub kind: ProbeKind,
    pub status: ProbeStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    pub output: String,
    pub error: String,
    pub duration_ms: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Probe {
    /// The probe as it stands at `now`: timed out if it is still open past
    /// its kind's timeout.
    fn at(mut self, now: Timestamp) -> Probe {
        let deadline = self.created_at + self.kind.timeout();
        if self.status.is_open() && now > deadline {
            self.status = ProbeStatus::Timeout;
            self.error = format!(
                "{} timed out after {} s",
                self.kind,
                self.kind.timeout().num_seconds()
            );
            self.updated_at = deadline;
        }
        self
    }

    /// Whether it ended more than [`RETAIN`] seconds before `now` (read
    /// through [`Probe::at`] first).
    fn forgotten(&self, now: Timestamp) -> bool {
        !self.status.is_open() && now - self.updated_at >= Duration::seconds(RETAIN)
    }
}

/// What a daemon reports when it is done (or, for updates, progressing).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: ProbeStatus,
    pub output: String,
    pub error: String,
    pub duration_ms: Option<i64>,
}

/// Why a probe was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// An update is already open for the runtime.
    UpdateOpen,
    /// [`MAX_KEPT`] probes of this kind are open for the runtime.
    RuntimeFull,
    /// [`MAX_TOTAL`] probes are open in all.
    AllFull,
}

/// What became of a daemon's result.
#[derive(Debug, Clone)]
pub enum Finished {
    Done(Probe),
    /// No such probe of this kind on this runtime (or long forgotten).
    NotFound,
    /// It ended already, with this status.
    AlreadyEnded(ProbeStatus),
}

/// The oldest creation time a probe of `kind` may have to be open at `now`.
fn open_since(kind: ProbeKind, now: Timestamp) -> Timestamp {
    now - kind.timeout()
}

/// The creation times before which an open ping and an open update have
/// timed out at `now`: what the engines' "finished" conditions take.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cutoffs {
    pub(super) ping: Timestamp,
    pub(super) update: Timestamp,
}

impl Cutoffs {
    fn at(now: Timestamp) -> Cutoffs {
        Cutoffs {
            ping: open_since(ProbeKind::Ping, now),
            update: open_since(ProbeKind::Update, now),
        }
    }

    pub(super) fn of(self, kind: ProbeKind) -> Timestamp {
        match kind {
            ProbeKind::Ping => self.ping,
            ProbeKind::Update => self.update,
        }
    }
}

/// Locks what [`create`] decides on, where the engine needs it.
fn lock_for_create(conn: &Conn<'_>, runtime: RuntimeId) -> Result<()> {
    dispatch!(conn, probes::lock_for_create(runtime))
}

/// Open probes of `kind` of `runtime` created since `open_since`.
fn count_open(
    conn: &Conn<'_>,
    runtime: RuntimeId,
    kind: ProbeKind,
    open_since: Timestamp,
) -> Result<i64> {
    dispatch!(conn, probes::count_open(runtime, kind, open_since))
}

/// Probes of `kind` of `runtime`, open or not.
fn count_kept(conn: &Conn<'_>, runtime: RuntimeId, kind: ProbeKind) -> Result<i64> {
    dispatch!(conn, probes::count_kept(runtime, kind))
}

fn count_all(conn: &Conn<'_>) -> Result<i64> {
    dispatch!(conn, probes::count_all())
}

/// Deletes the `n` oldest ended probes of `kind` of `runtime` (fewer when
/// there are fewer); returns how many.
fn forget_finished_of(
    conn: &Conn<'_>,
    runtime: RuntimeId,
    kind: ProbeKind,
    cutoffs: Cutoffs,
    n: i64,
) -> Result<i64> {
    dispatch!(conn, probes::forget_finished_of(runtime, kind, cutoffs, n))
}

/// Deletes the `n` oldest ended probes of all; returns how many.
fn forget_finished(conn: &Conn<'_>, cutoffs: Cutoffs, n: i64) -> Result<i64> {
    dispatch!(conn, probes::forget_finished(cutoffs, n))
}

fn insert(conn: &Conn<'_>, probe: &Probe) -> Result<()> {
    dispatch!(conn, probes::insert(probe))
}

/// The row of probe `id` as stored (locked with `lock`, where the engine
/// has row locks).
fn stored(conn: &Conn<'_>, id: ProbeId, lock: bool) -> Result<Option<Probe>> {
    dispatch!(conn, probes::get(id, lock))
}

fn update(conn: &Conn<'_>, probe: &Probe) -> Result<()> {
    dispatch!(conn, probes::update(probe))
}

/// Queues a probe of `kind` for `runtime` (which the caller has checked
/// exists and may be probed), making room as the bounds say. Call it in a
/// write.
pub fn create(
    conn: &Conn<'_>,
    kind: ProbeKind,
    runtime: RuntimeId,
    target_version: Option<String>,
) -> Result<std::result::Result<Probe, Refused>> {
    let now = Timestamp::now();
    let cutoffs = Cutoffs::at(now);
    // the counts below decide: no other write may change them meanwhile
    lock_for_create(conn, runtime)?;
    if kind == ProbeKind::Update && count_open(conn, runtime, kind, cutoffs.of(kind))? > 0 {
        return Ok(Err(Refused::UpdateOpen));
    }
    let kept = count_kept(conn, runtime, kind)?;
    if kept >= MAX_KEPT {
        let room = kept - MAX_KEPT + 1;
        if forget_finished_of(conn, runtime, kind, cutoffs, room)? < room {
            return Ok(Err(Refused::RuntimeFull));
        }
    }
    let all = count_all(conn)?;
    if all >= MAX_TOTAL {
        let room = all - MAX_TOTAL + 1;
        if forget_finished(conn, cutoffs, room)? < room {
            return Ok(Err(Refused::AllFull));
        }
    }
    let probe = Probe {
        id: ProbeId::new(),
        runtime_id: runtime,
        kind,
        status: ProbeStatus::Pending,
        target_version,
        output: String::new(),
        error: String::new(),
        duration_ms: None,
        created_at: now,
        updated_at: now,
    };
    insert(conn, &probe)?;
    Ok(Ok(probe))
}

/// The probe `id` of `runtime`, if there is one of this kind still
/// readable.
pub fn get(
    conn: &Conn<'_>,
    kind: ProbeKind,
    runtime: RuntimeId,
    id: ProbeId,
) -> Result<Option<Probe>> {
    let now = Timestamp::now();
    Ok(stored(conn, id, false)?
        .filter(|p| p.kind == kind && p.runtime_id == runtime)
        .map(|p| p.at(now))
        .filter(|p| !p.forgotten(now)))
}

/// The kinds of which `runtime` has a probe waiting for its daemon: what a
/// heartbeat checks before it writes anything.
pub fn pending_kinds(conn: &Conn<'_>, runtime: RuntimeId) -> Result<Vec<ProbeKind>> {
    let cutoffs = Cutoffs::at(Timestamp::now());
    dispatch!(conn, probes::pending_kinds(runtime, cutoffs))
}

/// Hands the oldest pending probe of `kind` of `runtime` to its daemon and
/// marks it running; a timed-out one is never handed over. Call it in a
/// write: of two heartbeats at once, only one takes it.
pub fn take_pending(conn: &Conn<'_>, kind: ProbeKind, runtime: RuntimeId) -> Result<Option<Probe>> {
    let now = Timestamp::now();
    dispatch!(
        conn,
        probes::take_pending(runtime, kind, open_since(kind, now), now)
    )
}

/// Records a daemon's result for probe `id` of `runtime` (its texts
/// already cut to what is kept). Call it in a write.
pub fn finish(
    conn: &Conn<'_>,
    kind: ProbeKind,
    runtime: RuntimeId,
    id: ProbeId,
    outcome: Outcome,
) -> Result<Finished> {
    let now = Timestamp::now();
    let lock = conn.writing();
    let Some(probe) = stored(conn, id, lock)?
        .filter(|p| p.kind == kind && p.runtime_id == runtime)
        .map(|p| p.at(now))
        .filter(|p| !p.forgotten(now))
    else {
        return Ok(Finished::NotFound);
    };
    if !probe.status.is_open() {
        return Ok(Finished::AlreadyEnded(probe.status));
    }
    let probe = Probe {
        status: outcome.status,
        output: outcome.output,
        error: outcome.error,
        duration_ms: outcome.duration_ms.or(probe.duration_ms),
        updated_at: now,
        ..probe
    };
    update(conn, &probe)?;
    Ok(Finished::Done(probe))
}

/// Deletes up to [`BATCH`] probes that ended more than [`RETAIN`]
/// seconds ago (timed-out ones counted from their timeout); returns how
/// many (the sweeper's step, in batches like its others).
pub fn forget_old(conn: &Conn<'_>) -> Result<usize> {
    let now = Timestamp::now();
    let before = now - Duration::seconds(RETAIN);
    dispatch!(conn, probes::forget_old(before, Cutoffs::at(before), BATCH))
}
