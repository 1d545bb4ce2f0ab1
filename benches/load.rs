//! Load benchmark: simulated daemons against the real binary.
//!
//! `scripts/load.sh` (or `cargo bench --bench load`); knobs: LOAD_DAEMONS
//! (1000, two runtimes each), LOAD_SECS (10, per timed phase), LOAD_CLIENTS
//! (32 concurrent connections), LOAD_TASKS (24000 queued for the claiming
//! phases, over 40 agents), LOAD_DATABASE_URL (a PostgreSQL database to
//! run on instead of a SQLite file; `scripts/load.sh` sets it for
//! `LOAD_ENGINE=postgres`), LOAD_CAPACITY (1: capacity limits, far away,
//! on the claiming runtimes, their machines and the workspace),
//! LOAD_NODES (1; more start that many servers on the one PostgreSQL
//! database, and requests go to them in turn — a claim cycle's requests
//! to one node), AGENTHUB_BENCH_BIN (another build of
//! the binary to load instead, to compare two builds in one run).
//!
//! Reports, from one run on one machine so they read as ratios: the raw
//! single-row SQLite commit rate with agenthub's pragmas, `GET /health`
//! throughput, registration latency, heartbeat throughput and latency while
//! other daemons claim and finish tasks and report usage, claim latency,
//! claim+start+usage+complete cycles on every connection,
//! errors, the latency of reads (`GET /api/runtimes`) while every other
//! connection floods the server with registrations, and the server's peak
//! RSS.

mod support;

use std::cell::RefCell;
use std::process::Command;

use std::rc::Rc;
use std::time::{Duration, Instant};
use support::start_node;

use serde_json::{json, Value};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Samples {
    micros: Vec<u64>,
    errors: usize,
}

impl Samples {
    fn line(&mut self, label: &str, secs: f64) -> f64 {
        self.micros.sort_unstable();
        let pct = |p: f64| {
            if self.micros.is_empty() {
                return 0.0;
            }
            let i = ((self.micros.len() as f64 - 1.0) * p).round() as usize;
            self.micros[i] as f64 / 1000.0
        };
        let rate = self.micros.len() as f64 / secs;
        println!(
            "{label:<26} n={:<7} rate={rate:>8.0}/s p50={:>6.2}ms p99={:>6.2}ms max={:>7.2}ms errors={}",
            self.micros.len(),
            pct(0.5),
            pct(0.99),
            pct(1.0),
            self.errors
        );
        rate
    }
}

/// CPU seconds (user + system) the servers have used so far: all of it,
/// and their writer threads', from /proc (clock ticks of 10 ms).
#[derive(Clone, Copy, Default)]
struct CpuTime {
    server: f64,
    writer: f64,
    /// This benchmark's own process: the load generator on the same cores.
    client: f64,
    /// PostgreSQL's processes (0 on SQLite).
    database: f64,
}

fn ticks_of(stat: &str) -> f64 {
    // the fields after the parenthesised name: utime and stime are the
    // 12th and 13th of them
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

fn cpu_of(pid: u32) -> (f64, f64) {
    let server = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(0.0, |s| ticks_of(&s));
    let writer = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .find(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim() == "agenthub-writer")
        })
        .and_then(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .map_or(0.0, |s| ticks_of(&s));
    (server, writer)
}

/// CPU of every `postgres` process on the machine (the benchmark's cluster
/// is the only one running while it runs); live processes only, so a
/// backend that ended within a phase is not counted.
fn postgres_cpu() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|p| {
            std::fs::read_to_string(p.path().join("comm")).is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(|p| std::fs::read_to_string(p.path().join("stat")).ok())
        .map(|s| ticks_of(&s))
        .sum()
}

fn cpu_time(pids: &[u32]) -> CpuTime {
    let (server, writer) = pids
        .iter()
        .map(|&pid| cpu_of(pid))
        .fold((0.0, 0.0), |(s, w), (s2, w2)| (s + s2, w + w2));
    let client = std::fs::read_to_string("/proc/self/stat").map_or(0.0, |s| ticks_of(&s));
    CpuTime {
        server,
        writer,
        client,
        database: postgres_cpu(),
    }
}

/// Server and writer CPU per request over a phase that started at `before`.
fn cpu_line(label: &str, pids: &[u32], before: CpuTime, requests: usize) {
    let after = cpu_time(pids);
    let per = |secs: f64| secs * 1e6 / requests.max(1) as f64;
    println!(
        "{label:<26} server CPU {:>6.0} us/request, of which writer thread {:>5.0} us; load generator {:>5.0} us; PostgreSQL {:>5.0} us",
        per(after.server - before.server),
        per(after.writer - before.writer),
        per(after.client - before.client),
        per(after.database - before.database)
    );
}

/// The servers' base URLs, taken in turn: a round-robin client.
struct Nodes {
    bases: Vec<String>,
    next: std::cell::Cell<usize>,
}

impl Nodes {
    fn next(&self) -> String {
        let n = self.next.get();
        self.next.set(n.wrapping_add(1));
        self.bases[n % self.bases.len()].clone()
    }
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Single-row commits per second on the database: PostgreSQL's at `url`,
/// or SQLite's on this disk with agenthub's pragmas.
fn raw_commit_rate(dir: &std::path::Path, url: Option<&str>) -> f64 {
    if let Some(url) = url {
        let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
        client
            .batch_execute("DROP TABLE IF EXISTS load_raw_commits; CREATE TABLE load_raw_commits (id bigserial PRIMARY KEY, v text NOT NULL)")
            .expect("create");
        let n = 2000;
        let start = Instant::now();
        for i in 0..n {
            client
                .execute(
                    "INSERT INTO load_raw_commits (v) VALUES ($1)",
                    &[&format!("row {i}")],
                )
                .expect("commit");
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        client
            .batch_execute("DROP TABLE load_raw_commits")
            .expect("drop");
        return rate;
    }
    let conn = rusqlite::Connection::open(dir.join("raw.db")).expect("open raw db");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
    )
    .expect("create");
    let n = 2000;
    let start = Instant::now();
    for i in 0..n {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; INSERT INTO t (v) VALUES ('row {i}'); COMMIT;"
        ))
        .expect("commit");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

type Client = awc::Client;

/// Claims a task for runtime `rt` (the reply, with `task` null when none).
async fn claim(client: &Client, base: &str, token: &str, rt: &str) -> Result<Value, ()> {
    let url = format!("{base}/api/daemon/runtimes/{rt}/tasks/claim");
    call(client, "POST", url, token, None).await
}

/// Starts, reports usage for and completes the task a claim handed out.
async fn finish(client: &Client, base: &str, token: &str, claimed: Value) -> Result<(), ()> {
    let Some(task) = claimed["task"]["id"].as_str() else {
        return Ok(());
    };
    let t = format!("{base}/api/daemon/tasks/{task}");
    call(client, "POST", format!("{t}/start"), token, None).await?;
    let usage = json!({"usage": [{"provider": "claude", "model": "claude-sonnet-4-5", "input_tokens": 1200, "output_tokens": 300}]});
    call(client, "POST", format!("{t}/usage"), token, Some(&usage)).await?;
    call(
        client,
        "POST",
        format!("{t}/complete"),
        token,
        Some(&json!({"output": "ok"})),
    )
    .await?;
    Ok(())
}

/// One claim+start+usage+complete cycle; an empty queue is an error (the
/// bench queued enough work).
async fn cycle(client: &Client, base: &str, token: &str, rt: &str) -> Result<(), ()> {
    let claimed = claim(client, base, token, rt).await?;
    if claimed["task"].is_null() {
        return Err(());
    }
    finish(client, base, token, claimed).await
}

async fn call(
    client: &Client,
    method: &str,
    url: String,
    token: &str,
    body: Option<&Value>,
) -> Result<Value, ()> {
    let req = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    }
    .insert_header(("Authorization", format!("Bearer {token}")));
    let mut res = match body {
        Some(b) => req.send_json(b).await.map_err(|_| ())?,
        None => req.send().await.map_err(|_| ())?,
    };
    if !res.status().is_success() {
        return Err(());
    }
    res.json::<Value>().limit(16 << 20).await.map_err(|_| ())
}

/// Runs `clients` loops of `op` until `deadline` (or until `more` says
/// there is nothing left to do), timing each call.
async fn timed<F, Fut>(clients: usize, until: Instant, op: F) -> Samples
where
    F: Fn(usize, usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), ()>>,
{
    timed_while(clients, until, || true, op).await
}

async fn timed_while<F, Fut>(
    clients: usize,
    until: Instant,
    more: impl Fn() -> bool,
    op: F,
) -> Samples
where
    F: Fn(usize, usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), ()>>,
{
    let samples = Rc::new(RefCell::new(Samples::default()));
    let op = &op;
    let more = &more;
    let loops = (0..clients).map(|c| {
        let samples = samples.clone();
        async move {
            let mut i = 0;
            while Instant::now() < until && more() {
                let t = Instant::now();
                let ok = op(c, i).await.is_ok();
                let took = t.elapsed().as_micros() as u64;
                let mut s = samples.borrow_mut();
                if ok {
                    s.micros.push(took);
                } else {
                    s.errors += 1;
                }
                i += 1;
            }
        }
    });
    futures_util::future::join_all(loops).await;
    Rc::try_unwrap(samples)
        .ok()
        .map(RefCell::into_inner)
        .unwrap_or_default()
}

fn main() {
    let daemons = knob("LOAD_DAEMONS", 1000);
    let secs = knob("LOAD_SECS", 10) as u64;
    let clients = knob("LOAD_CLIENTS", 32);
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "agenthub load: {daemons} daemons x 2 runtimes, {clients} connections, {secs} s phases"
    );
    let url = std::env::var("LOAD_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let node_count = knob("LOAD_NODES", 1).max(1);
    assert!(
        node_count == 1 || url.is_some(),
        "LOAD_NODES > 1 needs LOAD_DATABASE_URL: nodes share a PostgreSQL database"
    );
    println!(
        "engine: {}, {node_count} node(s)",
        if url.is_some() { "postgres" } else { "sqlite" }
    );
    let raw = raw_commit_rate(dir.path(), url.as_deref());
    println!(
        "{:<26} {raw:>8.0}/s ({})",
        "raw single-row commits",
        if url.is_some() {
            "INSERT in autocommit, the server's settings"
        } else {
            "BEGIN IMMEDIATE; INSERT; COMMIT, synchronous=FULL"
        }
    );

    let mut init = Command::new(support::binary());
    if let Some(url) = &url {
        init.env("AGENTHUB_DATABASE_URL", url);
    }
    let out = init
        .current_dir(dir.path())
        .args([
            "init",
            "--email",
            "load@example.com",
            "--db",
            "load.db",
            "--json",
        ])
        .output()
        .expect("init");
    let init: Value = serde_json::from_slice(&out.stdout).expect("init json");
    let token = init["token"].as_str().expect("token").to_string();
    let ws = init["workspace_id"]
        .as_str()
        .expect("workspace")
        .to_string();
    let servers: Vec<_> = (0..node_count)
        .map(|_| start_node(dir.path(), "load.db", url.as_deref()))
        .collect();
    let pids: Vec<u32> = servers.iter().map(|s| s.child.id()).collect();
    let pids = &pids;
    let nodes = Nodes {
        bases: servers.iter().map(|s| s.base.clone()).collect(),
        next: std::cell::Cell::new(0),
    };
    let nodes = &nodes;

    actix_web::rt::System::new().block_on(async move {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        let phase = || Instant::now() + Duration::from_secs(secs);
        if knob("LOAD_BUDGET", 0) == 1 {
            // every usage report of the cycles then charges a budget (one
            // far from its limit, so nothing is held back)
            let res = client
                .post(format!("{}/api/budgets?workspace_id={ws}", nodes.next()))
                .insert_header(("Authorization", format!("Bearer {token}")))
                .send_json(&json!({"scope": "workspace", "period": "monthly", "limit_usd": 100_000_000}))
                .await
                .expect("create a budget");
            assert_eq!(res.status().as_u16(), 201, "a budget");
            println!("budget: one workspace budget, charged by every usage report");
        }
        let cpu_before = cpu_time(pids);

        let mut health = timed(clients, phase(), |_, _| {
            let client = client.clone();
            let url = format!("{}/health", nodes.next());
            async move {
                let res = client.get(url).send().await.map_err(|_| ())?;
                res.status().is_success().then_some(()).ok_or(())
            }
        })
        .await;
        let health_rate = health.line("GET /health", secs as f64);
        cpu_line("  health", pids, cpu_before, health.micros.len());

        // registration of every daemon (two runtimes each), while the
        // runtimes already registered heartbeat, as a fleet coming up does
        let runtimes: Rc<RefCell<Vec<String>>> = Rc::default();
        let next = Rc::new(std::cell::Cell::new(0usize));
        let started = Instant::now();
        let cpu_before = cpu_time(pids);
        let remaining = next.clone();
        let registering = clients.saturating_sub(4).max(1);
        let register = timed_while(registering, Instant::now() + Duration::from_secs(600), move || remaining.get() < daemons, |_, _| {
            let client = client.clone();
            let (base, token, ws) = (nodes.next(), token.clone(), ws.clone());
            let runtimes = runtimes.clone();
            let next = next.clone();
            async move {
                let d = next.get();
                next.set(d + 1);
                let body = json!({"workspace_id": ws, "daemon_id": format!("host-{d}"), "device_name": format!("host-{d}"),
                                  "cli_version": "1.0.0", "runtimes": [{"type": "claude", "version": "2.0"}, {"type": "codex", "version": "0.9"}]});
                let reply = call(&client, "POST", format!("{base}/api/daemon/register"), &token, Some(&body)).await?;
                for rt in reply["runtimes"].as_array().ok_or(())? {
                    runtimes.borrow_mut().push(rt["id"].as_str().ok_or(())?.to_string());
                }
                Ok(())
            }
        });
        let registered = runtimes.clone();
        let beating = next.clone();
        let early_beats = timed_while(4, Instant::now() + Duration::from_secs(600), move || beating.get() < daemons, |c, i| {
            let client = client.clone();
            let (base, token) = (nodes.next(), token.clone());
            let registered = registered.clone();
            async move {
                let rt = {
                    let list = registered.borrow();
                    list.get((c + i * 4) % list.len().max(1)).cloned()
                };
                let Some(rt) = rt else {
                    // nothing registered yet: let the registrations run
                    actix_web::rt::time::sleep(Duration::from_millis(1)).await;
                    return Ok(());
                };
                call(&client, "POST", format!("{base}/api/daemon/heartbeat"), &token, Some(&json!({"runtime_id": rt})))
                    .await
                    .map(|_| ())
            }
        });
        let (mut register, mut early_beats) = futures_util::future::join(register, early_beats).await;
        let took = started.elapsed().as_secs_f64();
        let register_rate = register.line("register (2 runtimes)", took);
        cpu_line("  register + heartbeats", pids, cpu_before, register.micros.len() + early_beats.micros.len());
        early_beats.line("heartbeat while registering", took);
        let runtimes = runtimes.borrow().clone();
        assert_eq!(runtimes.len(), daemons * 2, "every daemon registered");

        // work for the claiming daemons: one agent on each of 40 runtimes
        let workers = 40.min(runtimes.len());
        let mut agents = Vec::new();
        for rt in &runtimes[..workers] {
            let body = json!({"name": "load", "runtime_id": rt, "max_concurrent_tasks": 100});
            let req = client
                .post(format!("{}/api/agents", nodes.next()))
                .insert_header(("Authorization", format!("Bearer {token}")))
                .insert_header(("X-Workspace-ID", ws.as_str()));
            let mut res = req.send_json(&body).await.expect("agent");
            let agent: Value = res.json().await.expect("agent json");
            agents.push(agent["id"].as_str().expect("agent id").to_string());
        }
        if knob("LOAD_CAPACITY", 0) == 1 {
            // every claim then counts the busy tasks of its runtime, its
            // machine and the workspace (limits far away: nothing waits)
            let limits = json!({"max_concurrent_tasks": 1000, "machine_max_concurrent_tasks": 1000});
            for rt in &runtimes[..workers] {
                let res = client
                    .patch(format!("{}/api/runtimes/{rt}", nodes.next()))
                    .insert_header(("Authorization", format!("Bearer {token}")))
                    .send_json(&limits)
                    .await
                    .expect("runtime limits");
                assert_eq!(res.status().as_u16(), 200, "runtime limits");
            }
            let res = client
                .patch(format!("{}/api/workspaces/{ws}", nodes.next()))
                .insert_header(("Authorization", format!("Bearer {token}")))
                .send_json(&json!({"max_concurrent_tasks": 10_000}))
                .await
                .expect("workspace limit");
            assert_eq!(res.status().as_u16(), 200, "workspace limit");
            println!("capacity: limits on every claiming runtime, its machine and the workspace");
        }
        // enough queued work for both claiming phases, queued over all
        // connections
        let queued = Rc::new(std::cell::Cell::new(0usize));
        let to_queue = knob("LOAD_TASKS", 24_000);
        let counter = queued.clone();
        let queueing = timed_while(clients, Instant::now() + Duration::from_secs(600), move || counter.get() < to_queue, |_, _| {
            let client = client.clone();
            let (base, token) = (nodes.next(), token.clone());
            let n = queued.get();
            queued.set(n + 1);
            let agent = agents[n % agents.len()].clone();
            async move {
                let body = json!({"prompt": format!("task {n}"), "priority": n % 3});
                call(&client, "POST", format!("{base}/api/agents/{agent}/tasks"), &token, Some(&body)).await.map(|_| ())
            }
        })
        .await;
        assert_eq!(queueing.errors, 0, "every task queued");

        // mixed load: most connections heartbeat, a few claim and finish
        // tasks and report their usage
        let until = phase();
        let heartbeat_clients = clients.saturating_sub(4).max(1);
        let heartbeats = timed(heartbeat_clients, until, |c, i| {
            let client = client.clone();
            let rt = runtimes[(c + i * heartbeat_clients) % runtimes.len()].clone();
            let (base, token) = (nodes.next(), token.clone());
            async move {
                call(&client, "POST", format!("{base}/api/daemon/heartbeat"), &token, Some(&json!({"runtime_id": rt})))
                    .await
                    .map(|_| ())
            }
        });
        let claim_only: Rc<RefCell<Samples>> = Rc::default();
        let claims = timed(4, until, |c, i| {
            let client = client.clone();
            let rt = runtimes[(c + i * 4) % workers].clone();
            let (base, token) = (nodes.next(), token.clone());
            let claim_only = claim_only.clone();
            async move {
                let t = Instant::now();
                let reply = claim(&client, &base, &token, &rt).await;
                let took = t.elapsed().as_micros() as u64;
                match &reply {
                    Ok(_) => claim_only.borrow_mut().micros.push(took),
                    Err(_) => claim_only.borrow_mut().errors += 1,
                }
                finish(&client, &base, &token, reply?).await
            }
        });
        let (mut heartbeats, mut claims) = futures_util::future::join(heartbeats, claims).await;
        let hb_rate = heartbeats.line("heartbeat (mixed load)", secs as f64);
        claim_only.borrow_mut().line("claim", secs as f64);
        claims.line("claim+start+usage+done", secs as f64);

        // claim cycles alone, on every connection: how many tasks a fleet
        // of daemons can take, run and finish per second
        let until = phase();
        let cpu_before = cpu_time(pids);
        let mut cycles = timed(clients, until, |c, i| {
            let client = client.clone();
            let rt = runtimes[(c + i * clients) % workers].clone();
            let (base, token) = (nodes.next(), token.clone());
            async move { cycle(&client, &base, &token, &rt).await }
        })
        .await;
        let cycle_rate = cycles.line("cycles, all connections", secs as f64);
        cpu_line("  cycle requests", pids, cpu_before, cycles.micros.len() * 4);

        // reads while every other connection writes as fast as it can:
        // registrations of new machines (each its own write transaction)
        let until = phase();
        let cpu_before = cpu_time(pids);
        let writers = clients.saturating_sub(4).max(1);
        let writes = timed(writers, until, |c, i| {
            let client = client.clone();
            let (base, token, ws) = (nodes.next(), token.clone(), ws.clone());
            async move {
                let body = json!({"workspace_id": ws, "daemon_id": format!("flood-{c}-{i}"), "device_name": "flood",
                                  "cli_version": "1.0.0", "runtimes": [{"type": "claude", "version": "2.0"}]});
                call(&client, "POST", format!("{base}/api/daemon/register"), &token, Some(&body)).await.map(|_| ())
            }
        });
        let reads = timed(4, until, |_, _| {
            let client = client.clone();
            let (base, token, ws) = (nodes.next(), token.clone(), ws.clone());
            async move {
                call(&client, "GET", format!("{base}/api/runtimes?workspace_id={ws}&limit=100"), &token, None)
                    .await
                    .map(|_| ())
            }
        });
        let (mut writes, mut reads) = futures_util::future::join(writes, reads).await;
        writes.line("register flood (writes)", secs as f64);
        reads.line("GET /api/runtimes (reads)", secs as f64);
        cpu_line("  flood + reads", pids, cpu_before, writes.micros.len() + reads.micros.len());

        for (n, &pid) in pids.iter().enumerate() {
            let rss = peak_rss_mib(pid);
            println!("{:<26} {rss:.1} MiB", format!("node {n} peak RSS"));
        }
        println!(
            "ratios: heartbeat/health = {:.2}, heartbeat/raw commit = {:.2}, register/health = {:.2}, register/raw commit = {:.2}, cycle requests/raw commit = {:.2}",
            hb_rate / health_rate,
            hb_rate / raw,
            register_rate / health_rate,
            register_rate / raw,
            cycle_rate * 4.0 / raw
        );
    });
    drop(servers);
}
