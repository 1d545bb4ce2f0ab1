//! Sweep cost at scale: how long one sweep takes over 100,000 runtimes and
//! what it does to heartbeat latency meanwhile.
//!
//! `cargo bench --bench sweep` (set SWEEP_BENCH_RUNTIMES to change the
//! size). The database is a real temporary SQLite file; heartbeats go over
//! HTTP on 127.0.0.1 to the real app.

mod support;

use std::time::{Duration, Instant};

use agenthub::admin;
use agenthub::app::Application;
use agenthub::config::{Config, SweeperConfig};
use agenthub::domain::{RuntimeId, RuntimeStatus, TaskId, Timestamp, UserId, WorkspaceId};
use agenthub::jobs::sweeper::sweep_once;
use agenthub::store::agents;
use agenthub::store::seed::{self, SeedRuntime};

const CLIENTS: usize = 8;
const LIVE_RUNTIMES: usize = 1000;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error")).init();
    let total: usize = std::env::var("SWEEP_BENCH_RUNTIMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    actix_web::rt::System::new().block_on(run(total));
}

/// Heartbeat latencies (µs) from `CLIENTS` concurrent clients for as long
/// as `until` says to go on.
async fn heartbeats(
    base: &str,
    token: &str,
    runtimes: &[String],
    until: impl Fn(usize) -> bool,
) -> (Vec<u64>, usize) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let errors = std::cell::Cell::new(0usize);
    let lat = std::cell::RefCell::new(Vec::new());
    let until = &until;
    let workers = (0..CLIENTS).map(|w| {
        let client = client.clone();
        let lat = &lat;
        let errors = &errors;
        async move {
            let mut i = w;
            while until(lat.borrow().len()) {
                let rt = &runtimes[i % runtimes.len()];
                i += CLIENTS;
                let start = Instant::now();
                let res = client
                    .post(format!("{base}/api/daemon/heartbeat"))
                    .insert_header(("Authorization", format!("Bearer {token}")))
                    .send_json(&serde_json::json!({ "runtime_id": rt }))
                    .await;
                let took = start.elapsed().as_micros() as u64;
                match res {
                    Ok(r) if r.status().is_success() => lat.borrow_mut().push(took),
                    _ => errors.set(errors.get() + 1),
                }
            }
        }
    });
    futures_util::future::join_all(workers).await;
    (lat.into_inner(), errors.get())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

fn summary(label: &str, mut lat: Vec<u64>, errors: usize, secs: f64) {
    lat.sort_unstable();
    println!(
        "{label:<28} n={:<6} errors={errors} rate={:>7.0}/s p50={:.2}ms p99={:.2}ms max={:.2}ms",
        lat.len(),
        lat.len() as f64 / secs,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
}

/// The fleet described in [`run`], in one transaction; returns the ids of
/// the live runtimes.
fn seed_fleet(
    tx: &agenthub::store::Conn<'_>,
    workspace: WorkspaceId,
    owner: UserId,
    total: usize,
) -> agenthub::store::Result<Vec<String>> {
    let t0 = Timestamp::now();
    let hour_ago = t0 - chrono::Duration::seconds(3600);
    let month_ago = t0 - chrono::Duration::days(30);
    let stale = total / 2;
    let mut live = Vec::new();
    for i in 0..total + LIVE_RUNTIMES {
        let id = RuntimeId::new();
        let (status, last_seen) = if i < stale {
            (RuntimeStatus::Online, hour_ago)
        } else if i < total {
            (RuntimeStatus::Offline, month_ago)
        } else {
            (RuntimeStatus::Online, t0)
        };
        seed::runtime(
            tx,
            &SeedRuntime {
                id,
                workspace,
                daemon_id: &format!("host-{i}"),
                name: "claude",
                provider: "claude",
                status,
                owner,
                last_seen_at: Some(last_seen),
                created_at: t0,
            },
        )?;
        if i < stale && i % 100 == 0 {
            let agent = support::seed_agent(tx, workspace, id, owner, t0)?;
            seed::dispatched_task(tx, TaskId::new(), workspace, agent, id, t0)?;
            // working, as a claim leaves it
            agents::reconcile_status(tx, agent)?;
        }
        if i >= total {
            live.push(id.to_string());
        }
    }
    Ok(live)
}

async fn run(total: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.database.path = dir.path().join("bench.db");
    let app = Application::build(config).expect("app");
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    actix_web::rt::spawn(app.run_until_stopped());
    let init = admin::init(&state.db, "bench@example.com", None, None).expect("init");

    // Half the fleet went silent an hour ago (the stale step turns them
    // offline); the other half has been offline for a month (GC deletes
    // them). 1% of the silent ones carry an agent with dispatched work.
    let seeded = Instant::now();
    let stale = total / 2;
    let (workspace, owner) = (init.workspace_id, init.user_id);
    let live = state
        .db
        .write_blocking(move |tx| seed_fleet(tx, workspace, owner, total))
        .expect("seed fleet");
    println!(
        "seeded {} runtimes ({} stale, {} long offline, {} live) in {:.1}s",
        total + LIVE_RUNTIMES,
        stale,
        total - stale,
        LIVE_RUNTIMES,
        seeded.elapsed().as_secs_f64()
    );

    // baseline: heartbeats with no sweep running
    let t = Instant::now();
    let (lat, errors) = heartbeats(&base, &init.token, &live, |n| n < 20_000).await;
    summary(
        "heartbeats, no sweep",
        lat,
        errors,
        t.elapsed().as_secs_f64(),
    );

    // the big sweep, on its own thread, with heartbeats running meanwhile
    let sweep_config = SweeperConfig {
        interval_secs: 3600,
        stale_after_secs: 45,
        offline_runtime_ttl_secs: 7 * 24 * 3600,
        dispatch_timeout_secs: 300,
        running_timeout_secs: 9000,
        // the silent runtimes were last heard from an hour ago: past the
        // grace, so their dispatched tasks fail in this sweep
        reconnect_grace_secs: 1800,
        queued_ttl_secs: 7200,
    };
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sweeper = {
        let state = state.clone();
        let config = sweep_config.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let report = sweep_once(&state, &config);
            done.store(true, std::sync::atomic::Ordering::Release);
            report
        })
    };
    let t = Instant::now();
    let (lat, errors) = heartbeats(&base, &init.token, &live, |_| {
        !done.load(std::sync::atomic::Ordering::Acquire)
    })
    .await;
    let secs = t.elapsed().as_secs_f64();
    let report = sweeper.join().expect("sweep thread");
    println!(
        "sweep: {} offline, {} tasks failed, {} timed out, {} deleted in {:.0} ms",
        report.stale_runtimes,
        report.offline_task_failures,
        report.timed_out_tasks,
        report.deleted_runtimes,
        report.duration.as_secs_f64() * 1000.0
    );
    summary("heartbeats during sweep", lat, errors, secs);

    // steady state: a sweep with nothing to do over the remaining fleet
    let t = Instant::now();
    let report = sweep_once(&state, &sweep_config);
    println!(
        "idle sweep over {} runtimes: {:.2} ms (changed {})",
        stale + LIVE_RUNTIMES,
        t.elapsed().as_secs_f64() * 1000.0,
        report.stale_runtimes + report.deleted_runtimes + report.offline_task_failures
    );
}
