//! `agenthub copy-data`: a whole install moved from a SQLite file into an
//! empty database (PostgreSQL when `AGENTHUB_TEST_POSTGRES` names a
//! server, else another SQLite file) and back into a new SQLite file; the
//! copies answer the API as the original does, refuse to overwrite data,
//! and a copy taken while the server writes is one consistent snapshot.

mod common;

use std::cell::Cell as StdCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use agenthub::admin;
use agenthub::domain::{Role, TaskId, WorkspaceId};
use agenthub::store::usage::{upsert_task_usage, UsageEntry};
use common::{binary, count_in, select_in, spawn_app_with, ServerProcess, TestApp, TestDb};
use serde_json::{json, Value};

const TABLES: [&str; 23] = [
    "user",
    "workspace",
    "member",
    "personal_access_token",
    "daemon_token",
    "agent_runtime",
    "agent",
    "agent_task_queue",
    "task_usage",
    "runtime_usage",
    "usage_block",
    "usage_zone_day",
    "usage_agent_block",
    "invitation",
    "task_token",
    "task_message",
    "pricing_override",
    "runtime_usage_quarter",
    "budget",
    "runtime_probe",
    "machine_limit",
    "agent_fallback",
    "webhook",
];

/// An app on a SQLite file whatever the suite runs on (the source of a
/// copy), without a sweeper that would change it meanwhile.
async fn sqlite_app() -> TestApp {
    spawn_app_with(|c| {
        c.database.url = None;
        c.sweeper.interval_secs = 3600;
    })
    .await
}

/// `agenthub copy-data --from FROM --to TO`, run in `dir`.
fn copy_data(dir: &Path, from: &str, to: &str) -> std::process::Output {
    binary()
        .current_dir(dir)
        .env_remove("AGENTHUB_DATABASE_URL")
        .env_remove("AGENTHUB_DB")
        .args(["copy-data", "--from", from, "--to", to])
        .output()
        .expect("run agenthub copy-data")
}

/// The rows per table a successful copy reports, and its workspace count.
fn report(output: &std::process::Output) -> (BTreeMap<String, i64>, String) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "copy-data failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut rows = BTreeMap::new();
    let mut totals = String::new();
    for line in stdout.lines() {
        if let Some((table, n)) = line.split_once(": ") {
            let n = n.strip_suffix(" rows").expect("`table: N rows`");
            rows.insert(table.to_string(), n.parse().expect("a row count"));
        } else {
            totals = line.to_string();
        }
    }
    assert_eq!(rows.len(), TABLES.len(), "{stdout}");
    (rows, totals)
}

fn counts(db: &TestDb) -> BTreeMap<String, i64> {
    TABLES
        .iter()
        .map(|t| {
            (
                t.to_string(),
                count_in(db, &format!("SELECT count(*) FROM \"{t}\"")),
            )
        })
        .collect()
}

/// Per workspace: the usage sums of usage_block's days and of its tasks' usage.
fn usage_totals(db: &TestDb) -> Vec<Vec<Value>> {
    // PostgreSQL sums bigints as numeric, hence the casts
    let mut rows = select_in(
        db,
        "SELECT workspace_id, CAST(sum(input_tokens) AS bigint), CAST(sum(output_tokens) AS bigint), CAST(sum(cache_read_tokens) AS bigint),
                CAST(sum(cache_write_tokens) AS bigint) FROM usage_block WHERE span = 1440 GROUP BY workspace_id
         ORDER BY workspace_id",
    );
    rows.extend(select_in(
        db,
        "SELECT t.workspace_id, CAST(sum(u.input_tokens) AS bigint), CAST(sum(u.output_tokens) AS bigint),
                CAST(sum(u.cache_read_tokens) AS bigint), CAST(sum(u.cache_write_tokens) AS bigint)
         FROM task_usage u JOIN agent_task_queue t ON t.id = u.task_id
         GROUP BY t.workspace_id ORDER BY t.workspace_id",
    ));
    rows
}

/// What one owner of a workspace reads, and their tokens.
struct Reader {
    ws: String,
    token: String,
    agent: String,
    /// More pages it reads: its pings and updates, a transcript.
    more: Vec<String>,
}

/// `GET base+path` with `token`: status and body.
async fn get(app: &TestApp, base: &str, path: &str, token: &str) -> (u16, Value) {
    let mut res = app
        .client
        .get(format!("{base}{path}"))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .expect("request");
    let body = res.body().limit(16 * 1024 * 1024).await.expect("body");
    (
        res.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// The pages people read, from the server at `base`.
async fn pages(app: &TestApp, base: &str, readers: &[Reader]) -> Vec<(String, u16, Value)> {
    let mut out = Vec::new();
    for r in readers {
        let ws = &r.ws;
        for path in [
            format!("/api/runtimes?workspace_id={ws}"),
            format!("/api/agents?workspace_id={ws}"),
            format!("/api/usage/daily?workspace_id={ws}"),
            format!("/api/usage/summary?workspace_id={ws}&days=30"),
            format!("/api/agents/{}/tasks?workspace_id={ws}", r.agent),
            format!("/api/workspaces/{ws}/members"),
        ]
        .into_iter()
        .chain(r.more.iter().cloned())
        {
            let (status, body) = get(app, base, &path, &r.token).await;
            out.push((path, status, body));
        }
    }
    out
}

/// Records task usage at a chosen instant through the real write path.
fn record(app: &TestApp, task: &str, ws: &str, model: &str, tokens: [i64; 4], at: &str) {
    let (task, ws): (TaskId, WorkspaceId) = (task.parse().unwrap(), ws.parse().unwrap());
    let entry = UsageEntry {
        provider: "anthropic".into(),
        model: model.into(),
        input_tokens: tokens[0],
        output_tokens: tokens[1],
        cache_read_tokens: tokens[2],
        cache_write_tokens: tokens[3],
    };
    let at = at.parse().unwrap();
    app.db
        .write_blocking(move |tx| upsert_task_usage(tx, task, ws, &entry, at))
        .unwrap();
}

/// Two workspaces with users, members, invitations, tokens, runtimes (one
/// offline, with its reason), agents (one archived), tasks in every
/// state, task usage with and without cost, runtime usage reports.
async fn install(app: &TestApp) -> (Vec<Reader>, Vec<String>) {
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let dave = app.add_user("dave@example.com", None);
    app.join(&alice.token, &ws, &dave, "admin").await;
    let r = app
        .post(
            &format!("/api/workspaces/{ws}/members"),
            &alice.token,
            json!({"email": "carol@example.com", "role": "member"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let laptop = admin::create_token(&app.db, "alice@example.com", Some("laptop"))
        .expect("token create")
        .token;

    let daemon = app.daemon_token(&alice.token, &ws, "mbp").await;
    let rt = app.runtime(&daemon, &ws, "mbp", "claude").await;
    let rt_old = app.runtime(&alice.token, &ws, "old-box", "codex").await;
    app.deregister(&alice.token, &[&rt_old]).await;
    let agent = app
        .agent(
            &alice.token,
            &ws,
            &rt,
            json!({"max_concurrent_tasks": 20, "instructions": "be brief", "visibility": "workspace",
                "fallback_runtime_ids": [rt_old], "fallback_after_secs": 120}),
        )
        .await;
    app.insert_agent(&ws, &rt_old, &alice.id, true);
    let r = app
        .post(
            &format!("/api/webhooks?workspace_id={ws}"),
            &alice.token,
            json!({"url": "https://example.com/hook", "events": ["budget:exceeded"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // capacity on the runtime, its machine and the workspace
    let r = app
        .patch(
            &format!("/api/runtimes/{rt}"),
            &alice.token,
            json!({"max_concurrent_tasks": 8, "machine_max_concurrent_tasks": 10}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .patch(
            &format!("/api/workspaces/{ws}"),
            &alice.token,
            json!({"max_concurrent_tasks": 50}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let usage = |cost: Option<i64>| {
        let mut entry = json!({"provider": "anthropic", "model": "opus", "input_tokens": 1200,
            "output_tokens": 340, "cache_read_tokens": 56, "cache_write_tokens": 7});
        if let Some(cost) = cost {
            entry["cost_usd_ticks"] = json!(cost);
        }
        json!({ "usage": [entry] })
    };
    let done = app.task(&alice.token, &agent, "done", 1).await;
    let failed = app.task(&alice.token, &agent, "failed", 0).await;
    let running = app.task(&alice.token, &agent, "running", 0).await;
    let dispatched = app.task(&alice.token, &agent, "dispatched", 0).await;
    for _ in 0..4 {
        let r = app.claim(&daemon, &rt).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    for (task, cost) in [
        (&done, Some(123_456_789)),
        (&failed, None),
        (&running, None),
    ] {
        let r = app
            .post(
                &format!("/api/daemon/tasks/{task}/start"),
                &daemon,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let r = app
            .post(
                &format!("/api/daemon/tasks/{task}/usage"),
                &daemon,
                usage(cost),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = app
        .post(
            &format!("/api/daemon/tasks/{running}/messages"),
            &daemon,
            json!({"messages": [
                {"seq": 1, "type": "text", "content": "Reading the tests"},
                {"seq": 2, "type": "tool_use", "tool": "bash", "input": {"command": "cargo test", "env": {"CI": "1"}}},
                {"seq": 3, "type": "tool_result", "tool": "bash", "output": "ok"},
            ]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for (task, end) in [(&done, "complete"), (&failed, "fail")] {
        let r = app
            .post(
                &format!("/api/daemon/tasks/{task}/{end}"),
                &daemon,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let cancelled = app.task(&bob.token, &agent, "cancelled", 0).await;
    let r = app
        .post(
            &format!("/api/tasks/{cancelled}/cancel"),
            &bob.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    app.task(&alice.token, &agent, "queued", 5).await;
    // usage of other days and hours, for the rollups
    record(
        app,
        &done,
        &ws,
        "sonnet",
        [10, 20, 30, 40],
        "2026-01-02T03:04:05.678Z",
    );
    record(
        app,
        &running,
        &ws,
        "opus",
        [1, 2, 3, 4],
        "2026-01-03T23:59:59.999Z",
    );
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let r = app
        .post(
            &format!("/api/daemon/runtimes/{rt}/usage"),
            &daemon,
            json!({"entries": [{"date": day, "provider": "claude", "model": "opus",
                "input_tokens": 5, "output_tokens": 6, "cache_read_tokens": 7,
                "cache_write_tokens": 8}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let _ = dispatched;
    // a price of the workspace's own, and what the usage cost with it
    let r = app
        .put(
            &format!("/api/pricing/overrides?workspace_id={ws}"),
            &alice.token,
            json!({"provider": "claude", "model": "opus", "effective_from": "2026-01-01",
                   "input_usd_per_mtok": 15, "output_usd_per_mtok": 75,
                   "cache_read_usd_per_mtok": 1.5, "cache_write_usd_per_mtok": 18.75}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // the workspace's zone, and budgets (one already at its limit)
    let r = app
        .request(
            "PATCH",
            &format!("/api/workspaces/{ws}"),
            Some(&alice.token),
            Some(&json!({"timezone": "Asia/Kathmandu"}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for body in [
        json!({"scope": "member", "scope_id": alice.id, "period": "monthly", "limit_usd": 0.000001}),
        json!({"scope": "workspace", "period": "daily", "limit_usd": 12.5, "warn_percent": 60}),
    ] {
        let r = app
            .post(
                &format!("/api/budgets?workspace_id={ws}"),
                &alice.token,
                body,
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    // a ping answered, a ping waiting, an update under way
    let mut probes = vec![
        format!("/api/tasks/{running}/messages"),
        format!("/api/tasks/{running}/usage"),
        format!("/api/pricing?workspace_id={ws}"),
        format!("/api/budgets?workspace_id={ws}"),
        format!("/api/workspaces/{ws}"),
    ];
    for (kind, body) in [
        ("ping", json!({})),
        ("update", json!({"target_version": "1.4.0"})),
    ] {
        let r = app
            .post(&format!("/api/runtimes/{rt}/{kind}"), &alice.token, body)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        probes.push(format!(
            "/api/runtimes/{rt}/{kind}/{}",
            r.body["id"].as_str().unwrap()
        ));
    }
    let r = app
        .post("/api/daemon/heartbeat", &daemon, json!({"runtime_id": rt}))
        .await;
    let ping = r.body["pending_ping"]["id"].as_str().unwrap().to_string();
    let r = app
        .post(
            &format!("/api/daemon/runtimes/{rt}/ping/{ping}/result"),
            &daemon,
            json!({"status": "completed", "output": "pong", "duration_ms": 42}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .post(&format!("/api/runtimes/{rt}/ping"), &alice.token, json!({}))
        .await;
    probes.push(format!(
        "/api/runtimes/{rt}/ping/{}",
        r.body["id"].as_str().unwrap()
    ));

    // a second workspace of another owner
    let erin = admin::init(&app.db, "erin@example.com", None, Some("Second")).expect("init");
    let (erin_token, ws2) = (erin.token, erin.workspace_id.to_string());
    let rt2 = app.runtime(&erin_token, &ws2, "erin-box", "claude").await;
    let agent2 = app.agent(&erin_token, &ws2, &rt2, json!({})).await;
    let task2 = app.task(&erin_token, &agent2, "t", 0).await;
    app.claim(&erin_token, &rt2).await;
    app.post(
        &format!("/api/daemon/tasks/{task2}/usage"),
        &erin_token,
        usage(Some(99)),
    )
    .await;

    let readers = vec![
        Reader {
            ws,
            token: alice.token.clone(),
            agent,
            more: probes,
        },
        Reader {
            ws: ws2,
            token: erin_token.clone(),
            agent: agent2,
            more: Vec::new(),
        },
    ];
    let tokens = vec![alice.token, laptop, bob.token, dave.token, erin_token];
    (readers, tokens)
}

/// Waits until the heartbeats the app buffers (written together every
/// quarter second, `heartbeats::FLUSH_EVERY`) are in the database: a copy
/// taken before would miss the last ones, and the original would answer
/// a newer `last_seen_at` than its copies. Writes what is still buffered,
/// then waits for the runtimes' times to hold still for a second (a
/// background write may have taken them first).
async fn settle(app: &TestApp) {
    let (state, db) = (app.state.clone(), app.db.clone());
    common::off_runtime(move || state.heartbeats.flush(&db)).expect("flush heartbeats");
    let seen = "SELECT id, last_seen_at FROM agent_runtime ORDER BY id";
    let mut last = app.select(seen);
    for _ in 0..30 {
        actix_web::rt::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = app.select(seen);
        if now == last {
            return;
        }
        last = now;
    }
    panic!("runtimes' last_seen_at kept changing");
}

#[actix_web::test]
async fn an_install_moves_into_an_empty_database_and_back() {
    let app = sqlite_app().await;
    let (readers, tokens) = install(&app).await;
    settle(&app).await;
    let source = TestDb::Sqlite(app.db_path.clone());
    let dir = tempfile::tempdir().unwrap();
    let (copy_dir, back_dir) = (dir.path().join("copy"), dir.path().join("back"));
    std::fs::create_dir_all(&copy_dir).unwrap();
    std::fs::create_dir_all(&back_dir).unwrap();
    // PostgreSQL when the suite has a server, else another SQLite file
    let copy = TestDb::fresh(&copy_dir);
    let copy_target = match &copy {
        TestDb::Postgres(url) => url.clone(),
        TestDb::Sqlite(path) => path.display().to_string(),
    };
    let back_path = back_dir.join("back.db");
    let back = TestDb::Sqlite(back_path.clone());

    let expected = counts(&source);
    assert!(expected.values().all(|n| *n > 0), "{expected:?}");
    let (rows, totals) = report(&copy_data(
        dir.path(),
        &app.db_path.display().to_string(),
        &copy_target,
    ));
    assert_eq!(rows, expected);
    assert_eq!(totals, "usage totals match for 2 workspace(s)");
    assert_eq!(counts(&copy), expected);
    assert_eq!(usage_totals(&copy), usage_totals(&source));
    // the copy's triggers rebuilt the task outcome rollups
    let outcomes = "SELECT CAST(count(*) AS bigint), CAST(sum(task_count) AS bigint),
                           CAST(sum(run_count) AS bigint), CAST(sum(run_seconds) AS bigint)
                    FROM task_outcome_agent_block";
    assert_eq!(select_in(&copy, outcomes), select_in(&source, outcomes));

    let (rows, totals) = report(&copy_data(
        dir.path(),
        &copy_target,
        &back_path.display().to_string(),
    ));
    assert_eq!(rows, expected);
    assert_eq!(totals, "usage totals match for 2 workspace(s)");
    assert_eq!(counts(&back), expected);
    assert_eq!(usage_totals(&back), usage_totals(&source));
    // the round trip gives back every value in the form SQLite stores it
    // (times fixed-width to the millisecond, ids hyphenated): the same file
    let original = common::sqlite::open_sql(&app.db_path);
    let returned = common::sqlite::open_sql(&back_path);
    // the task outcome rollups are not copied: the triggers that keep
    // them rebuild them from the tasks the copy writes
    assert!(count_in(&back, "SELECT count(*) FROM task_outcome_agent_block") > 0);
    for table in TABLES
        .iter()
        .chain(&["task_outcome_block", "task_outcome_agent_block"])
    {
        let table = *table;
        // rowid order, which lists break ties by, is kept too
        // (WITHOUT ROWID tables list in key order)
        let order = if [
            "task_outcome_block",
            "task_outcome_agent_block",
            "usage_block",
            "usage_zone_day",
            "usage_agent_block",
            "runtime_usage_quarter",
            "machine_limit",
            "agent_fallback",
        ]
        .contains(&table)
        {
            ""
        } else {
            " ORDER BY rowid"
        };
        let sql = format!("SELECT * FROM \"{table}\"{order}");
        let rows_of = |conn: &rusqlite::Connection| -> Vec<Vec<rusqlite::types::Value>> {
            let mut stmt = conn.prepare(&sql).unwrap();
            let n = stmt.column_count();
            stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let (theirs, ours) = (rows_of(&original), rows_of(&returned));
        assert_eq!(theirs, ours, "{table}");
    }

    // servers on both copies answer what the original answers
    let original_pages = pages(&app, &app.base, &readers).await;
    assert!(original_pages.iter().all(|(_, status, _)| *status == 200));
    for db in [&copy, &back] {
        let server = ServerProcess::start(dir.path(), db);
        assert_eq!(pages(&app, &server.base, &readers).await, original_pages);
        for token in &tokens {
            let (status, body) = get(&app, &server.base, "/api/me", token).await;
            assert_eq!(status, 200, "{body:?}");
        }
        // and the server goes on writing there: new rows, no collisions
        let r = &readers[0];
        let (status, _) = get(&app, &server.base, "/api/me", &r.token).await;
        assert_eq!(status, 200);
        let res = app
            .client
            .post(format!("{}/api/agents/{}/tasks", server.base, r.agent))
            .insert_header(("Authorization", format!("Bearer {}", r.token)))
            .send_json(&json!({"prompt": "after the move"}))
            .await
            .expect("request");
        assert_eq!(res.status().as_u16(), 201);
        let res = app
            .client
            .post(format!("{}/api/workspaces/{}/members", server.base, r.ws))
            .insert_header(("Authorization", format!("Bearer {}", r.token)))
            .send_json(&json!({"email": "frank@example.com", "role": "member"}))
            .await
            .expect("request");
        assert_eq!(res.status().as_u16(), 201);
    }
}

#[actix_web::test]
async fn copying_into_a_database_that_holds_rows_is_refused_and_changes_nothing() {
    let app = sqlite_app().await;
    install(&app).await;
    let source = app.db_path.display().to_string();
    let dir = tempfile::tempdir().unwrap();

    // an existing SQLite file, even an empty one, is never written
    let existing = dir.path().join("existing.db");
    std::fs::write(&existing, b"").unwrap();
    let out = copy_data(dir.path(), &source, &existing.display().to_string());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"");

    // a source that is not there
    let out = copy_data(dir.path(), "missing.db", "other.db");
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path().join("other.db").exists());

    // a database that holds an install already
    let target = TestDb::fresh(&dir.path().join("taken"));
    std::fs::create_dir_all(dir.path().join("taken")).unwrap();
    let target_arg = match &target {
        TestDb::Postgres(url) => url.clone(),
        TestDb::Sqlite(path) => path.display().to_string(),
    };
    let mut init = binary();
    init.current_dir(dir.path())
        .args(["init", "--email", "zed@example.com"]);
    target.point(&mut init);
    assert!(init.output().unwrap().status.success());
    let before = counts(&target);
    let out = copy_data(dir.path(), &source, &target_arg);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if common::on_postgres() {
        assert!(
            stderr.starts_with("error: cannot copy into postgres://")
                && stderr.contains("table user is not empty"),
            "{stderr}"
        );
    } else {
        assert!(stderr.contains("already exists"), "{stderr}");
    }
    assert_eq!(counts(&target), before);
    assert!(out.stdout.is_empty());
}

#[actix_web::test]
async fn a_copy_taken_while_the_server_writes_is_one_snapshot() {
    let app = Rc::new(sqlite_app().await);
    let (readers, _) = install(&app).await;
    let (ws, token, agent) = (
        readers[0].ws.clone(),
        readers[0].token.clone(),
        readers[0].agent.clone(),
    );
    let daemon = app.daemon_token(&token, &ws, "writer").await;
    let rt = app.runtime(&daemon, &ws, "writer", "claude").await;
    let writer_agent = app
        .agent(&token, &ws, &rt, json!({"max_concurrent_tasks": 100}))
        .await;
    let _ = agent;

    // a daemon that keeps queueing, claiming, reporting and finishing
    let stop = Rc::new(StdCell::new(false));
    let written = Rc::new(StdCell::new(0u64));
    let writes = actix_web::rt::spawn({
        let (app, stop, written) = (app.clone(), stop.clone(), written.clone());
        async move {
            while !stop.get() {
                let task = app.task(&token, &writer_agent, "busy", 0).await;
                app.claim(&daemon, &rt).await;
                let r = app
                    .post(
                        &format!("/api/daemon/tasks/{task}/usage"),
                        &daemon,
                        json!({"usage": [{"provider": "anthropic", "model": "opus",
                            "input_tokens": 3, "output_tokens": 4, "cost_usd_ticks": 5}]}),
                    )
                    .await;
                assert_eq!(r.status, 200, "{:?}", r.body);
                app.post(
                    &format!("/api/daemon/tasks/{task}/complete"),
                    &daemon,
                    json!({}),
                )
                .await;
                written.set(written.get() + 1);
            }
        }
    });
    while written.get() < 3 {
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let target = TestDb::fresh(dir.path());
    let target_arg = match &target {
        TestDb::Postgres(url) => url.clone(),
        TestDb::Sqlite(path) => path.display().to_string(),
    };
    let (source, work) = (app.db_path.display().to_string(), dir.path().to_path_buf());
    let started = written.get();
    let out = actix_web::rt::task::spawn_blocking(move || copy_data(&work, &source, &target_arg))
        .await
        .unwrap();
    let during = written.get() - started;
    stop.set(true);
    writes.await.unwrap();

    // its own check passed: every count and total of the snapshot matched
    let (rows, totals) = report(&out);
    assert_eq!(totals, "usage totals match for 2 workspace(s)");
    assert_eq!(counts(&target), rows);
    assert!(during > 0, "the server wrote nothing while the copy ran");
    // the snapshot is whole: each task's usage came with its rollups
    let copied = usage_totals(&target);
    let (daily, tasks) = copied.split_at(copied.len() / 2);
    assert_eq!(daily, tasks);
    // and the source went on past it
    let now = counts(&TestDb::Sqlite(app.db_path.clone()));
    assert!(
        now["agent_task_queue"] > rows["agent_task_queue"],
        "{now:?} {rows:?}"
    );
}
