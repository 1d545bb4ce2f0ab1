//! Usage pages at a year of a 50-person team's data.
//!
//! `cargo bench --bench usage` generates (USAGE_BENCH_ROWS, default
//! 1,000,000) task_usage rows over a year, 24 priced models, 200 runtimes
//! and 400 agents (two per runtime, each running three of the models),
//! written through the real write path (`upsert_task_usage`, which keeps
//! the rollups), plus a year of daily reports for every runtime; then
//! measures the usage routes over HTTP on 127.0.0.1 against the real app.
//! On a SQLite file, or on the PostgreSQL database USAGE_DATABASE_URL
//! names (`USAGE_ENGINE=postgres scripts/bench-usage.sh` makes one).

mod support;

use std::time::{Duration, Instant};

use agenthub::admin;
use agenthub::app::Application;
use agenthub::config::Config;
use agenthub::domain::{EntityId, RuntimeId, RuntimeStatus, TaskId, Timestamp};
use agenthub::store::seed::{self, SeedRuntime};
use agenthub::store::usage::{upsert_runtime_usage, upsert_task_usage, UsageEntry};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PEOPLE: usize = 50;
const RUNTIMES: usize = 200;
const AGENTS_PER_RUNTIME: usize = 2;
const MODELS: usize = 24;
const MODELS_PER_AGENT: usize = 3;
const ITERATIONS: usize = 100;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error")).init();
    let rows: usize = std::env::var("USAGE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    actix_web::rt::System::new().block_on(run(rows));
}

/// The `i`th of the models the team runs: the built-in price table's,
/// so every page prices what it reads.
fn model(i: usize) -> (String, String) {
    let mut listed: Vec<(String, String)> = agenthub::pricing::builtin()
        .into_iter()
        .map(|r| (r.provider, r.model))
        .collect();
    listed.dedup();
    listed
        .get(i)
        .cloned()
        .unwrap_or_else(|| ("lab".to_string(), format!("model-{i:02}")))
}

async fn run(rows: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    // a file that outlives the run when USAGE_SQLITE_FILE names one
    let kept = std::env::var("USAGE_SQLITE_FILE")
        .ok()
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from);
    let file = kept.clone().unwrap_or_else(|| dir.path().join("usage.db"));
    let kept_before = kept.as_ref().is_some_and(|p| p.exists());
    config.database.path = file.clone();
    let url = std::env::var("USAGE_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    config.database.url = url.clone();
    let app = Application::build(config).expect("app");
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    actix_web::rt::spawn(app.run_until_stopped());
    let reuse =
        std::env::var("USAGE_REUSE").is_ok_and(|v| v == "1") && (url.is_some() || kept_before);
    let started = Instant::now();
    let now = chrono::Utc::now();
    let (ws, token, runtime, task) = if reuse {
        // the data of an earlier run, measured again on a quieter machine
        let token = admin::create_token(&state.db, "lead@example.com", Some("bench"))
            .expect("token")
            .token;
        let (ws, runtime, task) = off_executor(|| {
            let sql = "SELECT (SELECT id FROM workspace),
                              (SELECT id FROM agent_runtime ORDER BY id LIMIT 1 OFFSET 7),
                              (SELECT task_id FROM task_usage ORDER BY task_id LIMIT 1)";
            match url.as_deref() {
                Some(url) => {
                    let mut client =
                        postgres::Client::connect(url, postgres::NoTls).expect("connect");
                    let row = client.query_one(sql, &[]).expect("an earlier run's data");
                    let ids: (uuid::Uuid, uuid::Uuid, uuid::Uuid) =
                        (row.get(0), row.get(1), row.get(2));
                    ids
                }
                None => {
                    let conn = rusqlite::Connection::open(&file).expect("open");
                    let text: (String, String, String) = conn
                        .query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .expect("an earlier run's data");
                    let id = |s: &str| uuid::Uuid::parse_str(s).expect("an id");
                    (id(&text.0), id(&text.1), id(&text.2))
                }
            }
        });
        (
            agenthub::domain::WorkspaceId::from_uuid(ws),
            token,
            RuntimeId::from_uuid(runtime),
            TaskId::from_uuid(task),
        )
    } else {
        generate(&state, rows, now).await
    };
    // the database itself, read beside the server: what was generated,
    // and what the rollups save (SQL, not the store API)
    // (the PostgreSQL driver blocks on a runtime of its own: it runs on a
    // thread of its own, never on this one's executor)
    let mut raw = off_executor(|| match &url {
        Some(url) => Raw::Postgres(Box::new(
            postgres::Client::connect(url, postgres::NoTls).expect("connect raw"),
        )),
        None => Raw::Sqlite(rusqlite::Connection::open(&file).expect("open raw")),
    });
    let (counts, size) = off_executor(|| (raw.counts(), raw.size(&file)));
    println!(
        "{} generated in {:.0} s: {} task_usage rows, {} tasks, {} runtimes, {} agents, {} models, {} people; rollups {} usage_block + {} usage_agent_block rows; runtime_usage {} rows; database {:.0} MiB",
        if url.is_some() { "PostgreSQL" } else { "SQLite" },
        started.elapsed().as_secs_f64(),
        counts[0],
        counts[1],
        RUNTIMES,
        RUNTIMES * AGENTS_PER_RUNTIME,
        MODELS,
        PEOPLE,
        counts[2],
        counts[3],
        RUNTIMES * 365 * 3,
        size as f64 / (1024.0 * 1024.0)
    );

    // on PostgreSQL, what autovacuum does to the rollups on a live
    // database (their pages are read from the index alone once vacuumed)
    if let Some(took) = off_executor(|| raw.vacuum()) {
        println!("VACUUM (ANALYZE) of the usage rollups took {took:.0} ms");
    }
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let bench = Routes {
        client: &client,
        base: &base,
        token: &token,
    };
    // first with the workspace in UTC: Kolkata is a zone of the reader's
    // only, whose local days are cut into blocks
    bench.set_zone(ws, "UTC").await;
    let mut routes = Vec::new();
    for days in [30, 365] {
        for tz in ["", "&tz=Asia/Kolkata"] {
            let r = format!("days={days}{tz}");
            routes.extend(workspace_routes(ws, days, tz));
            routes.extend([
                format!("/api/runtimes/{runtime}/usage?{r}"),
                format!("/api/runtimes/{runtime}/usage/by-agent?{r}"),
                format!("/api/runtimes/{runtime}/usage/by-hour?{r}"),
            ]);
        }
    }
    routes.push(format!("/api/runtimes/{runtime}/activity?tz=Asia/Kolkata"));
    routes.push(format!("/api/tasks/{task}/usage"));
    for route in &routes {
        bench.time(route).await;
    }
    // then with the workspace in Kolkata, whose local days it keeps whole
    bench.set_zone(ws, "Asia/Kolkata").await;
    for days in [30, 365] {
        for route in workspace_routes(ws, days, "&tz=Asia/Kolkata") {
            bench.time(&format!("{route} (workspace in Kolkata)")).await;
        }
    }
    bench.set_zone(ws, "UTC").await;

    // what the daily page would cost without the rollups
    for days in [30, 365] {
        let since = Timestamp::from_utc(now - chrono::Duration::days(days));
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let n = off_executor(|| raw.aggregate(ws, since));
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(n > 0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "raw aggregation over task_usage for {days} days (SQL only, no HTTP): median {:.1} ms",
            times[2]
        );
    }
    off_executor(move || drop(raw));
}

/// The workspace's usage routes for `days` in the zone of `tz`
/// (`&tz=…` or nothing).
fn workspace_routes(ws: agenthub::domain::WorkspaceId, days: i64, tz: &str) -> Vec<String> {
    let w = format!("days={days}{tz}&workspace_id={ws}");
    vec![
        format!("/api/usage/daily?{w}"),
        format!("/api/usage/summary?{w}"),
        format!("/api/dashboard/usage/daily?{w}"),
        format!("/api/dashboard/usage/by-agent?{w}"),
        format!("/api/dashboard/usage/by-runtime?{w}"),
        format!("/api/dashboard/agent-runtime?{w}"),
        format!("/api/dashboard/failures/daily?{w}"),
    ]
}

/// The server under test, as its owner.
struct Routes<'a> {
    client: &'a awc::Client,
    base: &'a str,
    token: &'a str,
}

impl Routes<'_> {
    /// Sets the workspace's time zone (which rebuilds its local days) and
    /// prints how long that took.
    async fn set_zone(&self, ws: agenthub::domain::WorkspaceId, zone: &str) {
        let t = Instant::now();
        let res = self
            .client
            .patch(format!("{}/api/workspaces/{ws}", self.base))
            .insert_header(("Authorization", format!("Bearer {}", self.token)))
            .send_json(&serde_json::json!({ "timezone": zone }))
            .await
            .expect("set the zone");
        assert!(res.status().is_success(), "set the zone: {}", res.status());
        println!(
            "workspace time zone set to {zone} (its local days rebuilt) in {:.0} ms",
            t.elapsed().as_secs_f64() * 1000.0
        );
    }

    /// Times `route` (anything after " (" is a note) ITERATIONS times and
    /// prints the median and the 95th percentile.
    async fn time(&self, route: &str) {
        let path = route.split(" (").next().unwrap_or(route);
        let mut times = Vec::with_capacity(ITERATIONS);
        let mut bytes = 0;
        for _ in 0..ITERATIONS {
            let t = Instant::now();
            let mut res = self
                .client
                .get(format!("{}{path}", self.base))
                .insert_header(("Authorization", format!("Bearer {}", self.token)))
                .send()
                .await
                .expect("request");
            let body = res.body().limit(64 << 20).await.expect("body");
            assert!(res.status().is_success(), "{route}: {}", res.status());
            bytes = body.len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{route:<80} median {:>6.2} ms  p95 {:>6.2} ms  ({bytes} bytes)",
            times[ITERATIONS / 2],
            times[ITERATIONS * 95 / 100]
        );
    }
}

/// Runs `f` on a thread of its own and waits for it.
fn off_executor<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(f).join().expect("the raw connection's thread"))
}

/// A connection of the benchmark's own to the database the server uses.
enum Raw {
    Sqlite(rusqlite::Connection),
    Postgres(Box<postgres::Client>),
}

impl Raw {
    /// task_usage, tasks, usage_block and usage_agent_block rows.
    fn counts(&mut self) -> [i64; 4] {
        let sql =
            "SELECT (SELECT count(*) FROM task_usage), (SELECT count(*) FROM agent_task_queue),
                    (SELECT count(*) FROM usage_block), (SELECT count(*) FROM usage_agent_block)";
        match self {
            Raw::Sqlite(conn) => conn
                .query_row(sql, [], |r| {
                    Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?])
                })
                .expect("counts"),
            Raw::Postgres(client) => {
                let r = client.query_one(sql, &[]).expect("counts");
                [r.get(0), r.get(1), r.get(2), r.get(3)]
            }
        }
    }

    /// `VACUUM (ANALYZE)` of the usage rollups on PostgreSQL, in ms
    /// (`None` on SQLite).
    fn vacuum(&mut self) -> Option<f64> {
        match self {
            Raw::Sqlite(_) => None,
            Raw::Postgres(client) => {
                let t = Instant::now();
                client
                    .batch_execute(
                        "VACUUM (ANALYZE) usage_block, usage_agent_block, usage_zone_day,
                             runtime_usage_quarter",
                    )
                    .expect("vacuum");
                Some(t.elapsed().as_secs_f64() * 1000.0)
            }
        }
    }

    /// Bytes the data takes: the file, or the database.
    fn size(&mut self, file: &std::path::Path) -> u64 {
        match self {
            Raw::Sqlite(_) => std::fs::metadata(file).map_or(0, |m| m.len()),
            Raw::Postgres(client) => {
                let r = client
                    .query_one("SELECT pg_database_size(current_database())", &[])
                    .expect("size");
                u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)
            }
        }
    }

    /// The daily page's numbers straight from task_usage (no rollup):
    /// how many (day, model) rows.
    fn aggregate(&mut self, ws: agenthub::domain::WorkspaceId, since: Timestamp) -> usize {
        match self {
            Raw::Sqlite(conn) => {
                let mut stmt = conn
                    .prepare(
                        "SELECT substr(u.created_at, 1, 10) AS day, u.model, sum(u.input_tokens), sum(u.output_tokens),
                                sum(u.cache_read_tokens), sum(u.cache_write_tokens), count(DISTINCT u.task_id)
                         FROM task_usage u JOIN agent_task_queue t ON t.id = u.task_id
                         WHERE t.workspace_id = ?1 AND u.created_at >= ?2
                         GROUP BY day, u.model",
                    )
                    .expect("prepare");
                stmt.query_map(rusqlite::params![ws, since], |_| Ok(()))
                    .expect("aggregate")
                    .count()
            }
            Raw::Postgres(client) => client
                .query(
                    "SELECT date_trunc('day', u.created_at) AS day, u.model, sum(u.input_tokens), sum(u.output_tokens),
                            sum(u.cache_read_tokens), sum(u.cache_write_tokens), count(DISTINCT u.task_id)
                     FROM task_usage u JOIN agent_task_queue t ON t.id = u.task_id
                     WHERE t.workspace_id = $1 AND u.created_at >= $2
                     GROUP BY day, u.model",
                    &[&ws, &since],
                )
                .expect("aggregate")
                .len(),
        }
    }
}

/// A year of the team's usage, through the real write path; returns the
/// workspace, its owner's token and the runtime whose page is timed.
async fn generate(
    state: &agenthub::app::State,
    rows: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> (agenthub::domain::WorkspaceId, String, RuntimeId, TaskId) {
    let init = admin::init(&state.db, "lead@example.com", None, None).expect("init");
    let ws = init.workspace_id;

    let mut rng = StdRng::seed_from_u64(42);
    let mut people = vec![init.user_id];
    for p in 1..PEOPLE {
        let added = admin::add_user(
            &state.db,
            &format!("dev{p}@example.com"),
            None,
            Some((ws, agenthub::domain::Role::Member)),
        )
        .expect("user");
        people.push(added.user_id);
    }
    let t0 = Timestamp::now();
    let (fleet_people, fleet_t0) = (people.clone(), t0);
    let (runtimes, agents) = state
        .db
        .write_blocking(move |tx| -> agenthub::store::Result<_> {
            let (people, t0) = (fleet_people, fleet_t0);
            let mut runtimes = Vec::new();
            let mut agents = Vec::new();
            for r in 0..RUNTIMES {
                let id = RuntimeId::new();
                let owner = people[r % PEOPLE];
                seed::runtime(
                    tx,
                    &SeedRuntime {
                        id,
                        workspace: ws,
                        daemon_id: &format!("host-{}", r / 2),
                        name: "rt",
                        provider: ["claude", "codex"][r % 2],
                        status: RuntimeStatus::Online,
                        owner,
                        last_seen_at: Some(t0),
                        created_at: t0,
                    },
                )?;
                for _ in 0..AGENTS_PER_RUNTIME {
                    let agent = support::seed_agent(tx, ws, id, owner, t0)?;
                    agents.push((agent, id));
                }
                runtimes.push(id);
            }
            Ok((runtimes, agents))
        })
        .expect("fleet");

    // each agent runs three of the models; a task uses 1-3 of its
    // agent's, recorded at a random moment of the year
    let mut first_task = None;
    let picks: Vec<Vec<usize>> = agents
        .iter()
        .map(|_| rand::seq::index::sample(&mut rng, MODELS, MODELS_PER_AGENT).into_vec())
        .collect();
    let mut written = 0;
    while written < rows {
        let batch = (rows - written).min(50_000);
        let mut items = Vec::with_capacity(batch / 2);
        let mut n = 0;
        while n < batch {
            let which = rng.random_range(0..agents.len());
            let (agent, runtime) = agents[which];
            let at = now - chrono::Duration::seconds(rng.random_range(0..365 * 24 * 3600));
            let models = rng.random_range(1..=MODELS_PER_AGENT).min(batch - n);
            let picked = rand::seq::index::sample(&mut rng, MODELS_PER_AGENT, models).into_vec();
            let entries: Vec<UsageEntry> = picked
                .into_iter()
                .map(|m| {
                    let (provider, model) = model(picks[which][m]);
                    UsageEntry {
                        provider,
                        model,
                        input_tokens: rng.random_range(100..200_000),
                        output_tokens: rng.random_range(10..20_000),
                        cache_read_tokens: rng.random_range(0..100_000),
                        cache_write_tokens: rng.random_range(0..10_000),
                    }
                })
                .collect();
            n += entries.len();
            let task = TaskId::new();
            first_task.get_or_insert(task);
            items.push((task, agent, runtime, Timestamp::from_utc(at), entries));
        }
        state
            .db
            .write_blocking(move |tx| -> agenthub::store::Result<_> {
                for (task, agent, runtime, at, entries) in &items {
                    seed::finished_task(tx, *task, ws, *agent, *runtime, *at)?;
                    for entry in entries {
                        upsert_task_usage(tx, *task, ws, entry, *at)?;
                    }
                }
                Ok(())
            })
            .expect("usage batch");
        written += batch;
    }
    // a year of daily reports from every runtime, three models each
    let (daily, reported_at) = (runtimes.clone(), t0);
    state
        .db
        .write_blocking(move |tx| -> agenthub::store::Result<_> {
            let (runtimes, t0) = (daily, reported_at);
            for runtime in &runtimes {
                for day in 0..365u64 {
                    let date = (now.date_naive() - chrono::Days::new(day))
                        .format("%Y-%m-%d")
                        .to_string();
                    for m in 0..3 {
                        let (provider, model) = model(m * 5);
                        let entry = UsageEntry {
                            provider,
                            model,
                            input_tokens: 1000,
                            output_tokens: 100,
                            ..Default::default()
                        };
                        upsert_runtime_usage(tx, *runtime, &date, &entry, t0)?;
                    }
                }
            }
            Ok(())
        })
        .expect("runtime usage");
    let task = first_task.expect("at least one task");
    (ws, init.token, runtimes[7], task)
}
