//! Usage accounting (SPEC §5): runtime usage reports and the workspace
//! usage pages, against hand-computed expectations.

mod common;

use agenthub::domain::{TaskId, WorkspaceId};
use agenthub::store::usage::{upsert_task_usage_with_cost, UsageEntry};
use chrono::{Days, Utc};
use common::faults::{self, Fault};
use common::{spawn_app, TestApp};
use serde_json::{json, Value};

fn date(days_ago: u64) -> String {
    (Utc::now().date_naive() - Days::new(days_ago))
        .format("%Y-%m-%d")
        .to_string()
}

fn entry(date: &str, model: &str, input: i64) -> Value {
    json!({"date": date, "provider": "claude", "model": model, "input_tokens": input,
           "output_tokens": 1, "cache_read_tokens": 2, "cache_write_tokens": 3})
}

/// Records task usage at a chosen instant through the real write path.
fn record(app: &TestApp, task: &str, ws: &str, model: (&str, &str), tokens: (i64, i64), at: &str) {
    record_costed(app, task, ws, model, tokens, None, at.parse().unwrap());
}

/// [`record`] with the provider's own cost, when it reported one.
fn record_costed(
    app: &TestApp,
    task: &str,
    ws: &str,
    (provider, model): (&str, &str),
    (input, output): (i64, i64),
    cost: Option<i64>,
    at: agenthub::domain::Timestamp,
) {
    let (task, ws): (TaskId, WorkspaceId) = (task.parse().unwrap(), ws.parse().unwrap());
    let entry = UsageEntry {
        provider: provider.into(),
        model: model.into(),
        input_tokens: input,
        output_tokens: output,
        ..Default::default()
    };
    app.db
        .write_blocking(move |tx| upsert_task_usage_with_cost(tx, task, ws, &entry, cost, at))
        .unwrap();
}

async fn workspace_with_task(app: &TestApp) -> (String, String, String, String, String) {
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app
        .agent(&alice.token, &ws, &rt, json!({"max_concurrent_tasks": 50}))
        .await;
    let task = app.task(&alice.token, &agent, "t", 0).await;
    (alice.token, ws, rt, agent, task)
}

#[actix_web::test]
async fn valid_entries_are_stored_and_bad_ones_listed_by_index() {
    let app = spawn_app().await;
    let (token, _ws, rt, _, _) = workspace_with_task(&app).await;
    let today = date(0);
    let body = json!({"entries": [
        entry(&today, "opus", 100),
        {"date": "2026-02-30", "provider": "claude", "model": "opus"},
        {"date": today, "provider": "claude", "model": "opus", "input_tokens": -5},
        {"date": today, "provider": "  ", "model": "opus"},
        {"date": today, "provider": "claude", "model": "x", "output_tokens": u64::MAX},
        {"date": today, "provider": "claude", "model": "x", "cache_read_tokens": "5"},
        {"date": "2026-1-5", "provider": "claude", "model": "x"},
        "not an object",
        entry(&today, "sonnet", 7),
    ]});
    let r = app
        .post(&format!("/api/daemon/runtimes/{rt}/usage"), &token, body)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "ok");
    assert_eq!(r.body["accepted"], 2);
    let rejected: Vec<(u64, String)> = r.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["index"].as_u64().unwrap(),
                x["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let indexes: Vec<u64> = rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, [1, 2, 3, 4, 5, 6, 7]);
    assert!(rejected[0].1.contains("calendar date"), "{:?}", rejected[0]);
    assert!(rejected[1].1.contains("input_tokens"), "{:?}", rejected[1]);
    assert_eq!(rejected[2].1, "provider is required");
    assert!(rejected[3].1.contains("output_tokens"), "{:?}", rejected[3]);
    assert!(
        rejected[4].1.contains("cache_read_tokens"),
        "{:?}",
        rejected[4]
    );
    assert_eq!(app.count("SELECT count(*) FROM runtime_usage"), 2);

    let r = app
        .post(
            &format!("/api/daemon/runtimes/{rt}/usage"),
            &token,
            json!({"entries": "x"}),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[actix_web::test]
async fn a_report_replaces_the_stored_day_total() {
    let app = spawn_app().await;
    let (token, _ws, rt, _, _) = workspace_with_task(&app).await;
    let path = format!("/api/daemon/runtimes/{rt}/usage");
    app.post(
        &path,
        &token,
        json!({"entries": [entry(&date(0), "opus", 100)]}),
    )
    .await;
    app.post(
        &path,
        &token,
        json!({"entries": [entry(&date(0), "opus", 40)]}),
    )
    .await;
    let r = app.get(&format!("/api/runtimes/{rt}/usage"), &token).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!([{"runtime_id": rt, "date": date(0), "provider": "claude", "model": "opus",
                "input_tokens": 40, "output_tokens": 1, "cache_read_tokens": 2, "cache_write_tokens": 3,
                "cost_usd_ticks": null, "source": "runtime_report",
                // priced as Claude Opus: (40 * 5 + 1 * 25 + 2 * 0.5 + 3 * 6.25) / 1e6
                "cost_usd": 0.00024475, "uncosted_tokens": 0}])
    );
}

#[actix_web::test]
async fn runtime_usage_window_and_days_fallback() {
    let app = spawn_app().await;
    let (token, _ws, rt, _, _) = workspace_with_task(&app).await;
    let ages = [0, 1, 89, 90, 364, 365];
    let entries: Vec<Value> = ages
        .iter()
        .map(|a| entry(&date(*a), "opus", *a as i64))
        .collect();
    let r = app
        .post(
            &format!("/api/daemon/runtimes/{rt}/usage"),
            &token,
            json!({"entries": entries}),
        )
        .await;
    assert_eq!(r.body["accepted"], 6);
    let dates = |r: &common::Reply| -> Vec<String> {
        r.body
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["date"].as_str().unwrap().to_string())
            .collect()
    };
    let last_90 = vec![date(0), date(1), date(89)];
    for days in [
        "",
        "?days=0",
        "?days=-3",
        "?days=366",
        "?days=abc",
        "?days=90",
    ] {
        let r = app
            .get(&format!("/api/runtimes/{rt}/usage{days}"), &token)
            .await;
        assert_eq!(dates(&r), last_90, "{days}");
    }
    let r = app
        .get(&format!("/api/runtimes/{rt}/usage?days=1"), &token)
        .await;
    assert_eq!(dates(&r), [date(0)]);
    let r = app
        .get(&format!("/api/runtimes/{rt}/usage?days=365"), &token)
        .await;
    assert_eq!(dates(&r), [date(0), date(1), date(89), date(90), date(364)]);
}

#[actix_web::test]
async fn usage_routes_keep_to_the_callers_workspace() {
    let app = spawn_app().await;
    let (token, ws, rt, _, task) = workspace_with_task(&app).await;
    let (mallory, mws) = app.init_user("mallory@example.com");
    let foreign = app.daemon_token(&mallory.token, &mws, "evil").await;
    let body = json!({"entries": [entry(&date(0), "opus", 1)]});
    for token in [&foreign, &mallory.token] {
        let r = app
            .post(
                &format!("/api/daemon/runtimes/{rt}/usage"),
                token,
                body.clone(),
            )
            .await;
        assert_eq!(r.status, 404);
        assert_eq!(r.error(), "runtime not found");
        let r = app
            .post(
                &format!("/api/daemon/tasks/{task}/usage"),
                token,
                json!({"usage": [{"provider": "c", "model": "m"}]}),
            )
            .await;
        assert_eq!(r.status, 404);
        assert_eq!(r.error(), "task not found");
    }
    let r = app
        .get(&format!("/api/runtimes/{rt}/usage"), &mallory.token)
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .get(
            &format!("/api/usage/daily?workspace_id={ws}"),
            &mallory.token,
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        app.count("SELECT count(*) FROM runtime_usage")
            + app.count("SELECT count(*) FROM task_usage"),
        0
    );
    let r = app.get(&format!("/api/runtimes/{rt}/usage"), &token).await;
    assert_eq!(r.body, json!([]));
}

#[actix_web::test]
async fn task_usage_upserts_and_rolls_up_by_model() {
    let app = spawn_app().await;
    let (token, ws, _rt, agent, t1) = workspace_with_task(&app).await;
    let t2 = app.task(&token, &agent, "t2", 0).await;
    let report = |task: &str, usage: Value| {
        let path = format!("/api/daemon/tasks/{task}/usage");
        let app = &app;
        let token = token.clone();
        async move { app.post(&path, &token, json!({ "usage": usage })).await }
    };
    let r = report(&t1, json!([{"provider": "anthropic", "model": "opus", "input_tokens": 100, "output_tokens": 10}])).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // running totals replace, not add
    report(&t1, json!([{"provider": "anthropic", "model": "opus", "input_tokens": 300, "output_tokens": 30}])).await;
    // the same model through another provider: still one task for opus
    report(
        &t1,
        json!([{"provider": "bedrock", "model": "opus", "input_tokens": 5}]),
    )
    .await;
    report(&t1, json!([{"provider": "anthropic", "model": "sonnet", "input_tokens": 1000, "output_tokens": 1000}])).await;
    report(&t2, json!([{"provider": "anthropic", "model": "opus", "input_tokens": 50, "cache_read_tokens": 7}])).await;
    let r = report(&t2, json!([{"provider": "anthropic", "model": "opus", "input_tokens": 1}, {"provider": "", "model": "x"}])).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "usage[1]: provider is required");

    let r = app
        .get(&format!("/api/usage/daily?workspace_id={ws}"), &token)
        .await;
    assert_eq!(
        r.body,
        json!([
            // opus at $5 / $25 / $0.50 per million input / output /
            // cache read tokens, through either provider: (355 * 5 +
            // 30 * 25 + 7 * 0.5) / 1e6; sonnet at $3 / $15
            {"date": date(0), "model": "opus", "total_input_tokens": 355, "total_output_tokens": 30,
             "total_cache_read_tokens": 7, "total_cache_write_tokens": 0, "task_count": 2,
             "cost_usd": 0.0025285, "uncosted_tokens": 0},
            {"date": date(0), "model": "sonnet", "total_input_tokens": 1000, "total_output_tokens": 1000,
             "total_cache_read_tokens": 0, "total_cache_write_tokens": 0, "task_count": 1,
             "cost_usd": 0.018, "uncosted_tokens": 0},
        ])
    );
    let r = app
        .get(&format!("/api/usage/summary?workspace_id={ws}"), &token)
        .await;
    let models: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["sonnet", "opus"], "heaviest first");
    assert_eq!(r.body[1]["task_count"], 2);
    assert_eq!(r.body[1]["cost_usd"], 0.0025285);
    assert_eq!(r.body[1]["priced"], true);
    assert!(r.body[1].get("date").is_none());
}

#[actix_web::test]
async fn day_window_boundaries() {
    let app = spawn_app().await;
    let (token, ws, _rt, _agent, task) = workspace_with_task(&app).await;
    // first second of today, last second of yesterday, and 30/31 days back
    record(
        &app,
        &task,
        &ws,
        ("p", "today"),
        (1, 0),
        &format!("{}T00:00:00.000Z", date(0)),
    );
    record(
        &app,
        &task,
        &ws,
        ("p", "yesterday"),
        (2, 0),
        &format!("{}T23:59:59.999Z", date(1)),
    );
    record(
        &app,
        &task,
        &ws,
        ("p", "day-29"),
        (4, 0),
        &format!("{}T12:00:00.000Z", date(29)),
    );
    record(
        &app,
        &task,
        &ws,
        ("p", "day-30"),
        (8, 0),
        &format!("{}T12:00:00.000Z", date(30)),
    );
    let models = |r: &common::Reply| -> Vec<String> {
        r.body
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["model"].as_str().unwrap().to_string())
            .collect()
    };
    let get = |q: &str| {
        let path = format!("/api/usage/daily?workspace_id={ws}{q}");
        let (app, token) = (&app, token.clone());
        async move { app.get(&path, &token).await }
    };
    assert_eq!(models(&get("&days=1").await), ["today"]);
    assert_eq!(models(&get("&days=2").await), ["today", "yesterday"]);
    // default 30: today and the 29 days before it
    assert_eq!(models(&get("").await), ["today", "yesterday", "day-29"]);
    assert_eq!(
        models(&get("&days=0").await),
        ["today", "yesterday", "day-29"]
    );
    assert_eq!(
        models(&get("&days=31").await),
        ["today", "yesterday", "day-29", "day-30"]
    );
    let r = app
        .get(
            &format!("/api/usage/summary?workspace_id={ws}&days=2"),
            &token,
        )
        .await;
    assert_eq!(models(&r), ["yesterday", "today"]);
}

#[actix_web::test]
async fn zones_east_and_west_of_utc_put_usage_on_different_dates() {
    let app = spawn_app().await;
    let (token, ws, _rt, _agent, task) = workspace_with_task(&app).await;
    let d = date(3);
    // 20:00 UTC is the next morning in Tokyo (+9) and noon in Los Angeles;
    // 03:00 UTC is noon in Tokyo and the previous evening in Los Angeles
    record(
        &app,
        &task,
        &ws,
        ("p", "evening"),
        (10, 0),
        &format!("{d}T20:00:00.000Z"),
    );
    record(
        &app,
        &task,
        &ws,
        ("p", "early"),
        (1, 0),
        &format!("{d}T03:00:00.000Z"),
    );
    // 23:30 in Kolkata (UTC+5:30), already the next day in Tokyo
    record(
        &app,
        &task,
        &ws,
        ("p", "late"),
        (2, 0),
        &format!("{d}T18:00:00.000Z"),
    );
    let rows = |tz: &str| {
        let app = &app;
        let token = token.clone();
        let path = format!("/api/usage/daily?workspace_id={ws}{tz}");
        async move {
            let r = app.get(&path, &token).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            r.body
                .as_array()
                .unwrap()
                .iter()
                .map(|x| {
                    (
                        x["date"].as_str().unwrap().to_string(),
                        x["model"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let (d_minus, d_plus) = (date(4), date(2));
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    let utc = [s(&d, "early"), s(&d, "evening"), s(&d, "late")];
    assert_eq!(rows("").await, utc);
    assert_eq!(rows("&tz=UTC").await, utc);
    assert_eq!(
        rows("&tz=Asia/Tokyo").await,
        [s(&d_plus, "evening"), s(&d_plus, "late"), s(&d, "early")]
    );
    assert_eq!(
        rows("&tz=Asia/Kolkata").await,
        [s(&d_plus, "evening"), s(&d, "early"), s(&d, "late")]
    );
    assert_eq!(
        rows("&tz=America/Los_Angeles").await,
        [s(&d, "evening"), s(&d, "late"), s(&d_minus, "early")]
    );

    let r = app
        .get(
            &format!("/api/usage/daily?workspace_id={ws}&tz=Mars/Olympus"),
            &token,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "unknown time zone \"Mars/Olympus\"");
    let r = app
        .get(
            &format!("/api/usage/summary?workspace_id={ws}&tz=Asia/Tokyo&days=7"),
            &token,
        )
        .await;
    assert_eq!(r.body[0]["model"], "evening");
    assert_eq!(r.body[0]["total_input_tokens"], 10);
}

#[actix_web::test]
async fn history_outlives_the_agent_and_the_runtime() {
    let app = spawn_app().await;
    let (token, ws, rt, agent, task) = workspace_with_task(&app).await;
    app.claim(&token, &rt).await;
    app.post(
        &format!("/api/daemon/tasks/{task}/start"),
        &token,
        json!({}),
    )
    .await;
    app.post(
        &format!("/api/daemon/tasks/{task}/usage"),
        &token,
        json!({"usage": [{"provider": "anthropic", "model": "opus", "input_tokens": 900, "output_tokens": 90}]}),
    )
    .await;
    app.post(
        &format!("/api/daemon/tasks/{task}/complete"),
        &token,
        json!({}),
    )
    .await;
    // a second runtime whose agent moves away, so the GC can take it
    let rt2 = app.runtime(&token, &ws, "old-box", "codex").await;
    let agent2 = app.agent(&token, &ws, &rt2, json!({})).await;
    let task2 = app.task(&token, &agent2, "t2", 0).await;
    app.claim(&token, &rt2).await;
    record(
        &app,
        &task2,
        &ws,
        ("openai", "gpt"),
        (70, 7),
        &format!("{}T10:00:00.000Z", date(2)),
    );
    app.post(
        &format!("/api/daemon/tasks/{task2}/fail"),
        &token,
        json!({}),
    )
    .await;

    let before_daily = app
        .get(&format!("/api/usage/daily?workspace_id={ws}"), &token)
        .await
        .body;
    let before_summary = app
        .get(
            &format!("/api/usage/summary?workspace_id={ws}&days=7"),
            &token,
        )
        .await
        .body;
    assert_eq!(before_daily.as_array().unwrap().len(), 2);

    app.post(&format!("/api/agents/{agent}/archive"), &token, json!({}))
        .await;
    assert_eq!(
        app.delete(&format!("/api/runtimes/{rt}"), &token)
            .await
            .status,
        200
    );
    app.request(
        "PUT",
        &format!("/api/agents/{agent2}"),
        Some(&token),
        Some(
            &json!({"runtime_id": app.runtime(&token, &ws, "new-box", "codex").await}).to_string(),
        ),
    )
    .await;
    app.post(
        "/api/daemon/deregister",
        &token,
        json!({"runtime_ids": [rt2]}),
    )
    .await;
    app.age_runtime(&rt2, 30 * 24 * 3600);
    let config = agenthub::config::SweeperConfig::default();
    assert_eq!(
        agenthub::jobs::sweeper::sweep_once(&app.state, &config).deleted_runtimes,
        1
    );

    assert_eq!(
        app.count("SELECT count(*) FROM agent_runtime WHERE id IN (SELECT id FROM agent_runtime)"),
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM agent_task_queue WHERE runtime_id IS NULL"),
        2
    );
    assert_eq!(app.count("SELECT count(*) FROM task_usage"), 2);
    assert_eq!(app.task_status(&task), "completed");
    assert_eq!(
        app.get(&format!("/api/usage/daily?workspace_id={ws}"), &token)
            .await
            .body,
        before_daily
    );
    assert_eq!(
        app.get(
            &format!("/api/usage/summary?workspace_id={ws}&days=7"),
            &token
        )
        .await
        .body,
        before_summary
    );
}

#[actix_web::test]
async fn a_task_usage_write_error_is_reported_to_the_daemon() {
    let app = spawn_app().await;
    let (token, ws, _rt, _agent, task) = workspace_with_task(&app).await;
    faults::fault(
        &app,
        Fault::RefuseInsert {
            table: "usage_agent_block",
            when: "true",
        },
    );
    let r = app
        .post(
            &format!("/api/daemon/tasks/{task}/usage"),
            &token,
            json!({"usage": [{"provider": "anthropic", "model": "opus", "input_tokens": 10}]}),
        )
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.error(), "internal server error");
    // nothing half-written: the usage row went with its rollups
    assert_eq!(app.count("SELECT count(*) FROM task_usage"), 0);
    assert_eq!(app.count("SELECT count(*) FROM usage_block"), 0);
    let r = app
        .get(&format!("/api/usage/daily?workspace_id={ws}"), &token)
        .await;
    assert_eq!(r.body, json!([]));
}

const MAX_COUNT: i64 = 1 << 53;

#[actix_web::test]
async fn counts_above_2_pow_53_are_refused() {
    let app = spawn_app().await;
    let (token, ws, rt, _, task) = workspace_with_task(&app).await;
    let today = date(0);
    let body = json!({"entries": [
        {"date": today, "provider": "claude", "model": "opus", "input_tokens": i64::MAX},
        {"date": today, "provider": "claude", "model": "sonnet", "input_tokens": MAX_COUNT},
        {"date": today, "provider": "claude", "model": "haiku", "cache_write_tokens": MAX_COUNT + 1},
    ]});
    let r = app
        .post(&format!("/api/daemon/runtimes/{rt}/usage"), &token, body)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"status": "ok", "accepted": 1, "rejected": [
            {"index": 0, "error": "input_tokens must be an integer between 0 and 9007199254740992 (2^53)"},
            {"index": 2, "error": "cache_write_tokens must be an integer between 0 and 9007199254740992 (2^53)"},
        ]})
    );
    let r = app.get(&format!("/api/runtimes/{rt}/usage"), &token).await;
    assert_eq!(r.body[0]["model"], "sonnet");
    assert_eq!(r.body[0]["input_tokens"], MAX_COUNT);

    let r = app
        .post(
            &format!("/api/daemon/tasks/{task}/usage"),
            &token,
            json!({"usage": [{"provider": "anthropic", "model": "opus", "output_tokens": i64::MAX}]}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error(),
        "usage[0]: output_tokens must be an integer between 0 and 9007199254740992 (2^53)"
    );
    assert_eq!(app.count("SELECT count(*) FROM task_usage"), 0);
    let r = app
        .get(&format!("/api/usage/daily?workspace_id={ws}"), &token)
        .await;
    assert_eq!(r.body, json!([]));
}

/// Every count in a usage page reply.
fn counts(rows: &Value) -> Vec<i64> {
    rows.as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_object().unwrap().values())
        .filter_map(Value::as_i64)
        .collect()
}

#[actix_web::test]
async fn totals_past_64_bits_saturate_and_every_read_still_answers() {
    let app = spawn_app().await;
    let (token, ws, _rt, _, task) = workspace_with_task(&app).await;
    // yesterday's share, through the same write path
    let noon = |days_ago| format!("{}T12:00:00.000Z", date(days_ago));
    record(
        &app,
        &task,
        &ws,
        ("earlier", "opus"),
        (MAX_COUNT, MAX_COUNT),
        &noon(1),
    );
    // 1100 providers of one model at 2^53 each: more than i64 holds
    let usage: Vec<Value> = (0..1100)
        .map(|i| {
            json!({"provider": format!("p{i}"), "model": "opus", "input_tokens": MAX_COUNT,
                   "output_tokens": MAX_COUNT, "cache_read_tokens": MAX_COUNT,
                   "cache_write_tokens": MAX_COUNT})
        })
        .collect();
    let path = format!("/api/daemon/tasks/{task}/usage");
    for _ in 0..2 {
        for chunk in usage.chunks(100) {
            let r = app.post(&path, &token, json!({ "usage": chunk })).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
    }
    // a later, smaller running total of one provider is still accepted
    let r = app
        .post(
            &path,
            &token,
            json!({"usage": [{"provider": "p0", "model": "opus", "input_tokens": 1}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    for query in ["", "&tz=Asia/Tokyo", "&tz=America/Los_Angeles"] {
        for page in ["daily", "summary"] {
            let r = app
                .get(
                    &format!("/api/usage/{page}?workspace_id={ws}&days=7{query}"),
                    &token,
                )
                .await;
            assert_eq!(r.status, 200, "{page}{query}: {:?}", r.body);
            let counts = counts(&r.body);
            assert!(!counts.is_empty(), "{page}{query}");
            assert!(counts.iter().all(|n| *n >= 0), "{page}{query}: {counts:?}");
        }
    }
    let r = app
        .get(&format!("/api/usage/summary?workspace_id={ws}"), &token)
        .await;
    assert_eq!(r.body[0]["total_input_tokens"], i64::MAX);
    assert_eq!(r.body[0]["total_output_tokens"], i64::MAX);
    assert_eq!(r.body[0]["task_count"], 1);
}

#[actix_web::test]
async fn usage_dated_after_tomorrow_is_refused() {
    let app = spawn_app().await;
    let (token, _ws, rt, _, _) = workspace_with_task(&app).await;
    let ahead = |days| {
        (Utc::now().date_naive() + Days::new(days))
            .format("%Y-%m-%d")
            .to_string()
    };
    let body = json!({"entries": [
        entry("9999-12-31", "opus", 5),
        entry(&ahead(1), "opus", 6),
        entry(&ahead(2), "opus", 7),
    ]});
    let r = app
        .post(&format!("/api/daemon/runtimes/{rt}/usage"), &token, body)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let future =
        |d: &str| format!("date {d:?} is in the future (more than one day after today, UTC)");
    assert_eq!(
        r.body,
        json!({"status": "ok", "accepted": 1, "rejected": [
            {"index": 0, "error": future("9999-12-31")},
            {"index": 2, "error": future(&ahead(2))},
        ]})
    );
    let r = app
        .get(&format!("/api/runtimes/{rt}/usage?days=7"), &token)
        .await;
    let dates: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["date"].as_str().unwrap())
        .collect();
    assert_eq!(dates, [ahead(1)]);
}

#[actix_web::test]
async fn a_runtime_report_carries_at_most_1000_entries() {
    let app = spawn_app().await;
    let (token, _ws, rt, _, _) = workspace_with_task(&app).await;
    let path = format!("/api/daemon/runtimes/{rt}/usage");
    let entries = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| entry(&date(0), &format!("model-{i}"), 1))
            .collect()
    };
    let before = app.dump();
    let r = app
        .post(&path, &token, json!({"entries": entries(1001)}))
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.error(), "a report carries at most 1000 entries");
    assert_eq!(before, app.dump(), "a refused report stored nothing");

    let r = app
        .post(&path, &token, json!({"entries": entries(1000)}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["accepted"], 1000);
    assert_eq!(app.count("SELECT count(*) FROM runtime_usage"), 1000);
}

#[actix_web::test]
async fn a_task_report_carries_at_most_100_entries() {
    let app = spawn_app().await;
    let (token, _ws, _rt, _, task) = workspace_with_task(&app).await;
    let path = format!("/api/daemon/tasks/{task}/usage");
    let usage = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"provider": "anthropic", "model": format!("model-{i}"), "input_tokens": 1}))
            .collect()
    };
    let before = app.dump();
    let r = app.post(&path, &token, json!({"usage": usage(101)})).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.error(), "a report carries at most 100 entries");
    assert_eq!(before, app.dump(), "a refused report stored nothing");

    let r = app.post(&path, &token, json!({"usage": usage(100)})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(app.count("SELECT count(*) FROM task_usage"), 100);
}

/// A row of `GET /api/runtimes/{id}/usage`.
#[derive(Debug, PartialEq, serde::Deserialize)]
struct RuntimeUsageRow {
    runtime_id: String,
    date: String,
    provider: String,
    model: String,
    input_tokens: i64,
    output_tokens: i64,
    cache_read_tokens: i64,
    cache_write_tokens: i64,
    cost_usd_ticks: Option<i64>,
    source: String,
}

fn row(
    rt: &str,
    date: &str,
    model: &str,
    tokens: (i64, i64),
    cost: Option<i64>,
    source: &str,
) -> RuntimeUsageRow {
    RuntimeUsageRow {
        runtime_id: rt.into(),
        date: date.into(),
        provider: "anthropic".into(),
        model: model.into(),
        input_tokens: tokens.0,
        output_tokens: tokens.1,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        cost_usd_ticks: cost,
        source: source.into(),
    }
}

#[actix_web::test]
async fn a_runtimes_usage_comes_from_its_tasks_and_older_reports_fill_the_gaps() {
    let app = spawn_app().await;
    let (token, _ws, rt, agent, t1) = workspace_with_task(&app).await;
    let t2 = app.task(&token, &agent, "t2", 0).await;
    for _ in 0..2 {
        assert_eq!(app.claim(&token, &rt).await.status, 200);
    }
    let report = |task: &str, usage: Value| {
        let path = format!("/api/daemon/tasks/{task}/usage");
        let app = &app;
        let token = token.clone();
        async move {
            let r = app.post(&path, &token, json!({ "usage": usage })).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
    };
    report(
        &t1,
        json!([{"provider": "anthropic", "model": "opus", "input_tokens": 100,
                        "output_tokens": 10, "cost_usd_ticks": 1500}]),
    )
    .await;
    // no cost, or 0 (what a daemon that knows no price sends): none reported
    report(&t2, json!([{"provider": "anthropic", "model": "opus", "input_tokens": 50},
                       {"provider": "anthropic", "model": "sonnet", "input_tokens": 7, "cost_usd_ticks": 0}])).await;
    // what an older daemon reported for the runtime: the same key as the
    // tasks' (their usage wins), and a day without task usage (shown)
    let reported = json!({"entries": [
        {"date": date(0), "provider": "anthropic", "model": "opus", "input_tokens": 999},
        {"date": date(1), "provider": "anthropic", "model": "opus", "input_tokens": 5},
    ]});
    let r = app
        .post(
            &format!("/api/daemon/runtimes/{rt}/usage"),
            &token,
            reported,
        )
        .await;
    assert_eq!(r.body["accepted"], 2);

    let usage = || {
        let path = format!("/api/runtimes/{rt}/usage?days=7");
        let (app, token) = (&app, token.clone());
        async move {
            let r = app.get(&path, &token).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            serde_json::from_value::<Vec<RuntimeUsageRow>>(r.body).unwrap()
        }
    };
    assert_eq!(
        usage().await,
        [
            row(&rt, &date(0), "opus", (150, 10), Some(1500), "task_usage"),
            row(&rt, &date(0), "sonnet", (7, 0), None, "task_usage"),
            row(&rt, &date(1), "opus", (5, 0), None, "runtime_report"),
        ]
    );

    // a running total replaces the task's share, cost included
    report(
        &t1,
        json!([{"provider": "anthropic", "model": "opus", "input_tokens": 60,
                        "output_tokens": 10, "cost_usd_ticks": 1000}]),
    )
    .await;
    let rows = usage().await;
    assert_eq!(
        rows[0],
        row(&rt, &date(0), "opus", (110, 10), Some(1000), "task_usage")
    );
    let stored = app.select(&format!(
        "SELECT cost_usd_ticks FROM task_usage WHERE task_id = '{t1}'"
    ));
    assert_eq!(stored, [[json!(1000)]]);

    let before = app.dump();
    for cost in [json!(-1), json!(1.5), json!("5"), json!(MAX_COUNT + 1)] {
        let r = app
            .post(
                &format!("/api/daemon/tasks/{t1}/usage"),
                &token,
                json!({"usage": [{"provider": "anthropic", "model": "opus", "cost_usd_ticks": cost}]}),
            )
            .await;
        assert_eq!(r.status, 400, "{cost}");
        assert_eq!(
            r.error(),
            "usage[0]: cost_usd_ticks must be an integer between 0 and 9007199254740992 (2^53)"
        );
    }
    assert_eq!(before, app.dump());
}

#[actix_web::test]
async fn a_runtimes_usage_reads_its_rollup_not_every_task() {
    let app = spawn_app().await;
    let (token, _ws, rt, agent, first) = workspace_with_task(&app).await;
    let mut tasks = vec![first];
    for i in 0..40 {
        tasks.push(app.task(&token, &agent, &format!("t{i}"), 0).await);
    }
    for _ in &tasks {
        assert_eq!(app.claim(&token, &rt).await.status, 200);
    }
    for task in &tasks {
        let r = app
            .post(
                &format!("/api/daemon/tasks/{task}/usage"),
                &token,
                json!({"usage": [{"provider": "anthropic", "model": "opus", "input_tokens": 3}]}),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    // one row per (runtime, quarter hour, agent, provider, model), however
    // many tasks (two if the writes straddled a quarter hour)
    let rows = app.count("SELECT count(*) FROM runtime_usage_quarter");
    assert!((1..=2).contains(&rows), "{rows} rows");
    let r = app.get(&format!("/api/runtimes/{rt}/usage"), &token).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(r.body[0]["input_tokens"], 3 * 41);
    assert_eq!(r.body[0]["source"], "task_usage");
    // opus at $5 per million input tokens
    assert_eq!(r.body[0]["cost_usd"], 3.0 * 41.0 * 5.0 / 1e6);
    assert_eq!(r.body[0]["uncosted_tokens"], 0);
}

#[actix_web::test]
async fn the_quarter_hour_rollup_keeps_runtime_agent_cost_and_uncosted_tokens() {
    let app = spawn_app().await;
    let (token, ws, rt, agent, first) = workspace_with_task(&app).await;
    let second = app.task(&token, &agent, "second", 0).await;
    app.claim(&token, &rt).await;
    app.claim(&token, &rt).await;
    let write = |task: &str, provider: &str, tokens: [i64; 2], cost: Option<i64>, at: &str| {
        let at = at.parse().unwrap();
        record_costed(
            &app,
            task,
            &ws,
            (provider, "opus"),
            (tokens[0], tokens[1]),
            cost,
            at,
        );
    };
    // 10:07 is the 10:00 quarter; a later running total with the
    // provider's cost moves its tokens from uncosted to costed, in the
    // quarter it was first recorded in
    write(&first, "p", [100, 10], None, "2026-03-01T10:07:00.000Z");
    write(
        &first,
        "p",
        [150, 20],
        Some(500),
        "2026-03-01T10:40:00.000Z",
    );
    // 10:20 is the 10:15 quarter; the same task's second provider of the
    // model does not count the task again
    write(&second, "p", [5, 0], None, "2026-03-01T10:20:00.000Z");
    write(&second, "q", [1, 0], None, "2026-03-01T10:21:00.000Z");
    let rows = app.select(
        "SELECT runtime_id, agent_id, provider, input_tokens, output_tokens, cost_usd_ticks,
                uncosted_input_tokens, uncosted_output_tokens, task_count
         FROM runtime_usage_quarter ORDER BY input_tokens DESC",
    );
    let row = |provider: &str, tokens: [i64; 2], cost: i64, uncosted: [i64; 2], tasks: i64| {
        vec![
            json!(rt),
            json!(agent),
            json!(provider),
            json!(tokens[0]),
            json!(tokens[1]),
            json!(cost),
            json!(uncosted[0]),
            json!(uncosted[1]),
            json!(tasks),
        ]
    };
    assert_eq!(
        rows,
        [
            row("p", [150, 20], 500, [0, 0], 1),
            row("p", [5, 0], 0, [5, 0], 1),
            row("q", [1, 0], 0, [1, 0], 0),
        ]
    );
    // the first two writes share a quarter, the others another one
    assert_eq!(
        app.count("SELECT count(DISTINCT bucket) FROM runtime_usage_quarter"),
        2
    );
    let _ = first;

    // the upgrade's backfill (the migration's INSERT, run again on an
    // emptied rollup) builds the same rows from the stored usage
    let all = "SELECT * FROM runtime_usage_quarter ORDER BY runtime_id, bucket, agent_id, provider, model";
    let kept = app.select(all);
    let migration = match &app.database {
        common::TestDb::Sqlite(_) => {
            include_str!("../migrations/sqlite/V16__runtime_usage_quarters.sql")
        }
        common::TestDb::Postgres(_) => {
            include_str!("../migrations/postgres/V9__runtime_usage_quarters.sql")
        }
    };
    let backfill = &migration[migration
        .find("INSERT INTO runtime_usage_quarter")
        .expect("the migration fills the rollup")..];
    // (select_in runs a statement that returns no rows as well)
    app.select("DELETE FROM runtime_usage_quarter");
    assert!(app.select(all).is_empty());
    app.select(backfill.trim_end().trim_end_matches(';'));
    assert_eq!(app.select(all), kept);
}

#[actix_web::test]
async fn a_runtimes_usage_by_agent_is_priced_folds_private_agents_and_keeps_to_the_zone() {
    use chrono::TimeZone;
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user(
        "bob@example.com",
        Some((&ws, agenthub::domain::Role::Member)),
    );
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let open = app
        .agent(
            &alice.token,
            &ws,
            &rt,
            json!({"visibility": "workspace", "max_concurrent_tasks": 5}),
        )
        .await;
    let private = app
        .agent(&alice.token, &ws, &rt, json!({"visibility": "private"}))
        .await;
    let shown = app.task(&alice.token, &open, "shown", 0).await;
    let hidden = app.task(&alice.token, &private, "hidden", 0).await;
    app.claim(&alice.token, &rt).await;
    app.claim(&alice.token, &rt).await;
    let write = |task: &str, model: (&str, &str), input: i64, cost: Option<i64>, at| {
        let at = agenthub::domain::Timestamp::from_utc(at);
        record_costed(&app, task, &ws, model, (input, 0), cost, at);
    };
    // today in Kolkata (UTC+5:30) started at a half hour in UTC
    let kolkata: chrono_tz::Tz = "Asia/Kolkata".parse().unwrap();
    let today = Utc::now().with_timezone(&kolkata).date_naive();
    let midnight = kolkata
        .from_local_datetime(&today.and_hms_opt(0, 0, 0).unwrap())
        .unwrap()
        .with_timezone(&Utc);
    let quarter = chrono::Duration::minutes(15);
    // 1M input tokens of Sonnet 4.5 ($3) just after that midnight, 1M
    // just before it (yesterday there)
    write(
        &shown,
        ("claude", "claude-sonnet-4-5-20250929"),
        1_000_000,
        None,
        midnight + quarter,
    );
    write(
        &hidden,
        ("claude", "claude-sonnet-4-5-20250929"),
        1_000_000,
        None,
        midnight - quarter,
    );
    // the provider's own cost wins; a model nobody priced is counted apart
    write(
        &hidden,
        ("claude", "opus"),
        7,
        Some(12_345),
        midnight + quarter,
    );
    write(&shown, ("ollama", "llama3"), 100, None, midnight + quarter);

    let rows = |token: &str, query: &str| {
        let (app, token) = (&app, token.to_string());
        let path = format!("/api/runtimes/{rt}/usage/by-agent?{query}");
        async move {
            let r = app.get(&path, &token).await;
            assert_eq!(r.status, 200, "{path}: {:?}", r.body);
            r.body
                .as_array()
                .unwrap()
                .iter()
                .map(|x| {
                    (
                        x["agent_id"].clone(),
                        x["model"].as_str().unwrap().to_string(),
                        x["input_tokens"].as_i64().unwrap(),
                        x["cost_usd"].as_f64().unwrap(),
                        x["uncosted_tokens"].as_i64().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let sonnet = "claude-sonnet-4-5-20250929".to_string();
    // one Kolkata day holds what was recorded after its midnight only
    assert_eq!(
        rows(&alice.token, "days=1&tz=Asia/Kolkata").await,
        [
            (json!(open), sonnet.clone(), 1_000_000, 3.0, 0),
            (json!(private), "opus".into(), 7, 0.0000012345, 0),
            (json!(open), "llama3".into(), 100, 0.0, 100),
        ]
    );
    // two days hold both; bob cannot see the private agent: its rows are
    // one "private" row per model
    assert_eq!(
        rows(&bob.token, "days=2&tz=Asia/Kolkata").await,
        [
            (json!(open), sonnet.clone(), 1_000_000, 3.0, 0),
            (json!("private"), sonnet.clone(), 1_000_000, 3.0, 0),
            (json!("private"), "opus".into(), 7, 0.0000012345, 0),
            (json!(open), "llama3".into(), 100, 0.0, 100),
        ]
    );
    let r = app
        .get(&format!("/api/runtimes/{rt}/usage/by-agent"), &bob.token)
        .await;
    assert_eq!(r.body[0]["uncosted_input_tokens"], 1_000_000);
    assert_eq!(r.body[0]["cost_usd_ticks"], 0);
    let r = app
        .get(
            &format!("/api/runtimes/{rt}/usage/by-agent?tz=Mars/Base"),
            &bob.token,
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (400, "unknown time zone \"Mars/Base\"")
    );
    let (mallory, _) = app.init_user("mallory@example.com");
    let r = app
        .get(
            &format!("/api/runtimes/{rt}/usage/by-agent"),
            &mallory.token,
        )
        .await;
    assert_eq!((r.status, r.error()), (404, "runtime not found"));

    // by hour of the day: a quarter either side of Kolkata's midnight is
    // 23:45 and 00:15 there, and both in the 18:00 hour in UTC
    let hours = |query: &str| {
        let (app, token) = (&app, bob.token.clone());
        let path = format!("/api/runtimes/{rt}/usage/by-hour?{query}");
        async move {
            let r = app.get(&path, &token).await;
            assert_eq!(r.status, 200, "{path}: {:?}", r.body);
            r.body
                .as_array()
                .unwrap()
                .iter()
                .map(|x| {
                    (
                        x["hour"].as_i64().unwrap(),
                        x["model"].as_str().unwrap().to_string(),
                        x["input_tokens"].as_i64().unwrap(),
                        x["cost_usd"].as_f64().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        hours("days=2&tz=Asia/Kolkata").await,
        [
            (0, sonnet.clone(), 1_000_000, 3.0),
            (0, "llama3".into(), 100, 0.0),
            (0, "opus".into(), 7, 0.0000012345),
            (23, sonnet.clone(), 1_000_000, 3.0),
        ]
    );
    assert_eq!(
        hours("days=2").await,
        [
            (18, sonnet.clone(), 2_000_000, 6.0),
            (18, "llama3".into(), 100, 0.0),
            (18, "opus".into(), 7, 0.0000012345),
        ]
    );
}
