//! The sweeper (SPEC §6): every `interval_secs`, three independent steps —
//! a failing step logs a warning and the others still run, and the actor
//! keeps going:
//!
//! 1. online runtimes silent for `stale_after_secs` go offline (offline
//!    reason `stale`), and dispatched/running tasks on offline runtimes
//!    (swept or deregistered) not heard from for `reconnect_grace_secs`
//!    fail (`runtime_reconnect_timeout`): a daemon back within the grace
//!    finds its work as it left it;
//! 2. tasks dispatched longer than `dispatch_timeout_secs`, or running
//!    longer than `running_timeout_secs` on a runtime that is not online,
//!    fail with `task timed out`; tasks queued for `queued_ttl_secs` on a
//!    runtime offline that long expire (`queued_expired`);
//! 3. offline runtimes last seen more than `offline_runtime_ttl_secs` ago
//!    with no agent rows at all are deleted, and pings and updates that
//!    ended more than an hour ago are forgotten (`store::probes`).
//!
//! On PostgreSQL, nodes sharing the database sweep it one at a time: a
//! node sweeps only while it holds the store's `sweeper` lease
//! ([`crate::store::Lease`]), and another takes it over at its next tick
//! once that node is gone.
//!
//! Each step works in batches of [`sweeps::BATCH`] rows, one short write
//! transaction per batch with a breather between batches, so request handlers never wait long for the
//! write lock. Agents of failed tasks get their status reconciled in the
//! same transaction.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context};
use serde_json::json;

use crate::config::SweeperConfig;
use crate::domain::{RuntimeId, Timestamp, WorkspaceId};
use crate::events::{EventBus, DAEMON_REGISTER};
use crate::failures::Failures;
use crate::heartbeats::Heartbeats;
use crate::metrics::Metrics;
use crate::store::probes;
use crate::store::sweeps::{self, FailedTask, BATCH};
use crate::store::Conn;
use crate::store::Error;
use crate::store::{Lease, Store};

/// Pause between two batches of a step, so request handlers queued for the
/// write lock get it before the next batch does.
const BREATHER: Duration = Duration::from_millis(2);

/// What one sweep did.
#[derive(Debug, Default, Clone)]
pub struct SweepReport {
    pub stale_runtimes: usize,
    pub offline_task_failures: usize,
    pub timed_out_tasks: usize,
    pub expired_tasks: usize,
    pub deleted_runtimes: usize,
    pub forgotten_probes: usize,
    pub duration: Duration,
}

/// What a sweep works with: the store, the bus it announces on, and the
/// heartbeats still buffered.
#[derive(Clone, Copy)]
pub struct Sweeping<'a> {
    pub db: &'a Store,
    pub events: &'a EventBus,
    pub heartbeats: &'a Heartbeats,
}

pub struct Sweeper {
    db: Store,
    events: EventBus,
    heartbeats: Heartbeats,
    metrics: Metrics,
    config: SweeperConfig,
    busy: Arc<AtomicBool>,
    /// Several nodes on one database sweep it one at a time.
    lease: Arc<Mutex<Lease>>,
}

impl Sweeper {
    pub fn new(parts: Sweeping<'_>, metrics: Metrics, config: SweeperConfig) -> Sweeper {
        Sweeper {
            db: parts.db.clone(),
            events: parts.events.clone(),
            heartbeats: parts.heartbeats.clone(),
            metrics,
            config,
            busy: Arc::new(AtomicBool::new(false)),
            lease: Arc::new(Mutex::new(parts.db.lease("sweeper"))),
        }
    }

    /// Starts a sweep on the blocking pool unless the previous one is still
    /// running.
    fn tick(&self) {
        if self.busy.swap(true, Ordering::AcqRel) {
            log::warn!("sweep skipped: the previous one is still running");
            return;
        }
        let (db, events, heartbeats) = (
            self.db.clone(),
            self.events.clone(),
            self.heartbeats.clone(),
        );
        let config = self.config.clone();
        let busy = self.busy.clone();
        let metrics = self.metrics.clone();
        let lease = self.lease.clone();
        actix::spawn(async move {
            let sweep = move || {
                // only one tick runs at a time (`busy`): the lock is free
                let held = lease
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .held();
                if !held {
                    return None;
                }
                let parts = Sweeping {
                    db: &db,
                    events: &events,
                    heartbeats: &heartbeats,
                };
                Some(sweep_once(parts, &config))
            };
            let result = actix_web::web::block(sweep).await;
            match result {
                Ok(Some(report)) => {
                    metrics.record_sweep(report.duration.as_secs_f64());
                    log_report(&report)
                }
                // another node sweeps this database
                Ok(None) => {}
                Err(e) => log::warn!("sweep did not run: {e}"),
            }
            busy.store(false, Ordering::Release);
        });
    }
}

impl Actor for Sweeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = Duration::from_secs(self.config.interval_secs);
        log::info!("sweeper running every {} s", every.as_secs());
        ctx.run_interval(every, |sweeper, _| sweeper.tick());
    }
}

fn log_report(report: &SweepReport) {
    let changed = report.stale_runtimes
        + report.offline_task_failures
        + report.timed_out_tasks
        + report.expired_tasks
        + report.deleted_runtimes
        + report.forgotten_probes;
    if changed > 0 {
        log::info!(
            "sweep: {} runtime(s) offline, {} task(s) failed on offline runtimes, {} timed out, {} expired in the queue, {} runtime(s) deleted, {} ping(s) and update(s) forgotten in {} ms",
            report.stale_runtimes,
            report.offline_task_failures,
            report.timed_out_tasks,
            report.expired_tasks,
            report.deleted_runtimes,
            report.forgotten_probes,
            report.duration.as_millis()
        );
    }
}

fn cutoff(secs: u64) -> Timestamp {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX / 1000);
    Timestamp::now() - chrono::Duration::seconds(secs)
}

/// Runs every step once (blocking; the actor calls it on the blocking
/// pool). A failing step is logged and does not stop the others.
pub fn sweep_once<'a>(parts: impl Into<Sweeping<'a>>, config: &SweeperConfig) -> SweepReport {
    let started = Instant::now();
    let mut report = SweepReport::default();
    let Sweeping {
        db,
        events,
        heartbeats,
    } = parts.into();
    // judge staleness on every heartbeat received so far
    if let Err(e) = heartbeats.flush(db) {
        log::warn!("sweep: writing buffered heartbeats failed: {e}");
    }

    match sweep_stale(db, events, cutoff(config.stale_after_secs)) {
        Ok(n) => report.stale_runtimes = n,
        Err(e) => log::warn!("sweep: marking stale runtimes offline failed: {e}"),
    }
    let grace = cutoff(config.reconnect_grace_secs);
    match fail_in_batches(db, events, move |conn| {
        sweeps::fail_tasks_on_offline_runtimes(conn, grace)
    }) {
        Ok(n) => report.offline_task_failures = n,
        Err(e) => log::warn!("sweep: failing tasks on offline runtimes failed: {e}"),
    }
    let dispatched = cutoff(config.dispatch_timeout_secs);
    let running = cutoff(config.running_timeout_secs);
    match fail_in_batches(db, events, move |conn| {
        sweeps::fail_timed_out_tasks(conn, dispatched, running)
    }) {
        Ok(n) => report.timed_out_tasks = n,
        Err(e) => log::warn!("sweep: failing timed-out tasks failed: {e}"),
    }
    let queued = cutoff(config.queued_ttl_secs);
    match fail_in_batches(db, events, move |conn| {
        sweeps::expire_queued_tasks(conn, queued)
    }) {
        Ok(n) => report.expired_tasks = n,
        Err(e) => log::warn!("sweep: expiring queued tasks failed: {e}"),
    }
    match collect_garbage(db, events, cutoff(config.offline_runtime_ttl_secs)) {
        Ok(n) => report.deleted_runtimes = n,
        Err(e) => log::warn!("sweep: deleting abandoned runtimes failed: {e}"),
    }
    match forget_probes(db) {
        Ok(n) => report.forgotten_probes = n,
        Err(e) => log::warn!("sweep: forgetting old pings and updates failed: {e}"),
    }
    report.duration = started.elapsed();
    report
}

/// One `daemon:register` event per workspace listing its runtimes.
fn publish_per_workspace(events: &EventBus, action: &str, rows: &[(RuntimeId, WorkspaceId)]) {
    let mut by_workspace: BTreeMap<WorkspaceId, Vec<RuntimeId>> = BTreeMap::new();
    for (runtime, workspace) in rows {
        by_workspace.entry(*workspace).or_default().push(*runtime);
    }
    for (workspace, runtimes) in by_workspace {
        events.publish(
            DAEMON_REGISTER,
            workspace,
            json!({"action": action, "runtime_ids": runtimes}),
        );
    }
}

fn sweep_stale(db: &Store, events: &EventBus, cutoff: Timestamp) -> Result<usize, Error> {
    let mut total = 0;
    loop {
        let rows = db.write_blocking(move |tx| sweeps::mark_stale_offline(tx, cutoff))?;
        total += rows.len();
        publish_per_workspace(events, "stale_sweep", &rows);
        if (rows.len() as i64) < BATCH {
            return Ok(total);
        }
        std::thread::sleep(BREATHER);
    }
}

fn collect_garbage(db: &Store, events: &EventBus, cutoff: Timestamp) -> Result<usize, Error> {
    let mut total = 0;
    loop {
        let rows = db.write_blocking(move |tx| sweeps::delete_abandoned_runtimes(tx, cutoff))?;
        total += rows.len();
        publish_per_workspace(events, "runtime_gc", &rows);
        if (rows.len() as i64) < BATCH {
            return Ok(total);
        }
        std::thread::sleep(BREATHER);
    }
}

fn forget_probes(db: &Store) -> Result<usize, Error> {
    let mut total = 0;
    loop {
        let n = db.write_blocking(probes::forget_old)?;
        total += n;
        if (n as i64) < BATCH {
            return Ok(total);
        }
        std::thread::sleep(BREATHER);
    }
}

/// Fails tasks batch by batch with `step`, reconciling the status of their
/// agents in the same transaction, then publishes `task:failed` and
/// `agent:status`.
fn fail_in_batches(
    db: &Store,
    events: &EventBus,
    step: impl Fn(&Conn<'_>) -> Result<Vec<FailedTask>, Error> + Clone + Send + 'static,
) -> Result<usize, Error> {
    let mut total = 0;
    loop {
        let step = step.clone();
        let failures = db.write_blocking(move |tx| Failures::settle(tx, step(tx)?))?;
        total += failures.failed.len();
        failures.publish(events);
        if (failures.failed.len() as i64) < BATCH {
            return Ok(total);
        }
        std::thread::sleep(BREATHER);
    }
}
