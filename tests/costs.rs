//! What usage cost, where and when (issue: prices, budgets and usage by
//! runtime, agent, provider and model in any time zone): the workspace
//! usage pages and the dashboard routes, against hand-computed figures.

mod common;

use agenthub::domain::{TaskId, Timestamp, WorkspaceId};
use agenthub::store::seed::{backdate_task, TaskClock};
use agenthub::store::usage::{upsert_task_usage_with_cost, UsageEntry};
use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use common::{spawn_app, TestApp, TestUser};
use serde_json::{json, Value};

/// The UTC date `days_ago` days before today.
fn date(days_ago: u64) -> String {
    (Utc::now().date_naive() - Days::new(days_ago))
        .format("%Y-%m-%d")
        .to_string()
}

/// Records `input`/`output` tokens of `provider`/`model` for `task` at
/// `at`, with the provider's own cost when given (1e-10 USD).
fn record(
    app: &TestApp,
    (task, ws): (&str, &str),
    (provider, model): (&str, &str),
    (input, output): (i64, i64),
    cost: Option<i64>,
    at: DateTime<Utc>,
) {
    let (task, ws): (TaskId, WorkspaceId) = (task.parse().unwrap(), ws.parse().unwrap());
    let entry = UsageEntry {
        provider: provider.into(),
        model: model.into(),
        input_tokens: input,
        output_tokens: output,
        ..Default::default()
    };
    let at = Timestamp::from_utc(at);
    app.db
        .write_blocking(move |tx| upsert_task_usage_with_cost(tx, task, ws, &entry, cost, at))
        .unwrap();
}

/// Alice's workspace with a runtime, an agent and a task.
async fn workspace(app: &TestApp) -> (TestUser, String, String, String, String) {
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app
        .agent(&alice.token, &ws, &rt, json!({"max_concurrent_tasks": 50}))
        .await;
    let task = app.task(&alice.token, &agent, "t", 0).await;
    (alice, ws, rt, agent, task)
}

/// GET `path` (with `workspace_id`) as `token`: 200 and its rows.
async fn rows(app: &TestApp, token: &str, ws: &str, path: &str) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = app
        .get(&format!("{path}{sep}workspace_id={ws}"), token)
        .await;
    assert_eq!(r.status, 200, "{path}: {:?}", r.body);
    r.body.as_array().expect("a list").clone()
}

/// The (date, model, input tokens) of daily rows whose model starts with
/// `prefix`.
fn days_of(rows: &[Value], prefix: &str) -> Vec<(String, String, i64)> {
    rows.iter()
        .filter(|r| r["model"].as_str().unwrap().starts_with(prefix))
        .map(|r| {
            let input = r
                .get("total_input_tokens")
                .or_else(|| r.get("input_tokens"))
                .and_then(Value::as_i64)
                .unwrap();
            (
                r["date"].as_str().unwrap().to_string(),
                r["model"].as_str().unwrap().to_string(),
                input,
            )
        })
        .collect()
}

/// Sets the workspace's time zone as its owner.
async fn set_zone(app: &TestApp, token: &str, ws: &str, zone: &str) {
    let body = json!({ "timezone": zone }).to_string();
    let r = app
        .request(
            "PATCH",
            &format!("/api/workspaces/{ws}"),
            Some(token),
            Some(&body),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["timezone"]),
        (200, &json!(zone)),
        "{:?}",
        r.body
    );
}

/// When `date` starts in `tz`.
fn midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    tz.from_local_datetime(&date.and_time(chrono::NaiveTime::MIN))
        .earliest()
        .expect("a zone whose midnight exists")
        .with_timezone(&Utc)
}

#[actix_web::test]
async fn a_minute_either_side_of_local_midnight_lands_on_its_own_day_in_every_zone_class() {
    let app = spawn_app().await;
    let (alice, ws, _rt, _agent, task) = workspace(&app).await;
    // west, east, and offsets of :30 and :45
    let zones = [
        ("west", "America/Los_Angeles"),
        ("east", "Asia/Tokyo"),
        ("half", "Asia/Kolkata"),
        ("quarter", "Asia/Kathmandu"),
        ("eucla", "Australia/Eucla"),
    ];
    let mut expected = Vec::new();
    for (name, zone) in zones {
        let tz: Tz = zone.parse().unwrap();
        // yesterday (local) starts: a minute before is the day before
        let yesterday = Utc::now().with_timezone(&tz).date_naive() - Days::new(1);
        let start = midnight(tz, yesterday);
        let minute = chrono::Duration::minutes(1);
        let (before, after) = (format!("{name}-before"), format!("{name}-after"));
        record(
            &app,
            (&task, &ws),
            ("p", &before),
            (3, 0),
            None,
            start - minute,
        );
        record(
            &app,
            (&task, &ws),
            ("p", &after),
            (5, 0),
            None,
            start + minute,
        );
        let day_before = (yesterday - Days::new(1)).format("%Y-%m-%d").to_string();
        expected.push((
            zone,
            name,
            yesterday.format("%Y-%m-%d").to_string(),
            day_before,
        ));
    }
    for (zone, name, yesterday, day_before) in expected {
        let want = vec![
            (yesterday.clone(), format!("{name}-after"), 5),
            (day_before.clone(), format!("{name}-before"), 3),
        ];
        for page in ["/api/usage/daily", "/api/dashboard/usage/daily"] {
            let got = rows(&app, &alice.token, &ws, &format!("{page}?days=7&tz={zone}")).await;
            assert_eq!(days_of(&got, name), want, "{page} in {zone}");
        }
        // the summary of the last local day holds only what came after
        let got = rows(
            &app,
            &alice.token,
            &ws,
            &format!("/api/usage/summary?days=2&tz={zone}"),
        )
        .await;
        let models: Vec<&str> = got
            .iter()
            .filter_map(|r| r["model"].as_str())
            .filter(|m| m.starts_with(name))
            .collect();
        assert_eq!(models, [format!("{name}-after")], "summary in {zone}");
    }
}

#[actix_web::test]
async fn a_day_of_a_dst_change_has_its_own_length() {
    let app = spawn_app().await;
    let (alice, ws, _rt, _agent, task) = workspace(&app).await;
    let tz: Tz = "America/New_York".parse().unwrap();
    // the latest day in the past year whose length is not 24 hours
    let today = Utc::now().with_timezone(&tz).date_naive();
    let (day, length) = (1..364)
        .map(|back| today - Days::new(back))
        .map(|d| (d, midnight(tz, d + Days::new(1)) - midnight(tz, d)))
        .find(|(_, length)| length.num_hours() != 24)
        .expect("a DST change within a year");
    let (start, end) = (midnight(tz, day), midnight(tz, day + Days::new(1)));
    let half_hour = chrono::Duration::minutes(30);
    // (a task's usage of one provider and model is one running total:
    // three providers make three rows)
    record(
        &app,
        (&task, &ws),
        ("p1", "dst"),
        (1, 0),
        None,
        start + half_hour,
    );
    // the workspace's own zone keeps whole local days: rebuilt with the
    // usage so far, then kept by the writes after
    set_zone(&app, &alice.token, &ws, "America/New_York").await;
    // half an hour before the day ends: 22.5 or 24.5 hours after it began
    record(
        &app,
        (&task, &ws),
        ("p2", "dst"),
        (10, 0),
        None,
        end - half_hour,
    );
    record(&app, (&task, &ws), ("p3", "dst"), (100, 0), None, end);
    let fmt = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    // in the workspace's zone, and in a zone of the reader's only
    for workspace_zone in ["America/New_York", "UTC"] {
        set_zone(&app, &alice.token, &ws, workspace_zone).await;
        let got = rows(
            &app,
            &alice.token,
            &ws,
            "/api/usage/daily?days=365&tz=America/New_York",
        )
        .await;
        assert_eq!(
            days_of(&got, "dst"),
            [
                (fmt(day + Days::new(1)), "dst".to_string(), 100),
                (fmt(day), "dst".to_string(), 11),
            ],
            "{day} lasts {} hours; workspace in {workspace_zone}",
            length.num_hours()
        );
    }
}

#[actix_web::test]
async fn an_override_prices_usage_from_its_day_on_and_a_reported_cost_wins() {
    let app = spawn_app().await;
    let (alice, ws, _rt, agent, task) = workspace(&app).await;
    let noon = |days_ago: u64| {
        (Utc::now().date_naive() - Days::new(days_ago))
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc()
    };
    // a million input tokens of Claude Sonnet (built in at $3) five days
    // ago and yesterday; one more yesterday whose cost the provider said
    let sonnet = ("anthropic", "claude-sonnet-4-5");
    record(&app, (&task, &ws), sonnet, (1_000_000, 0), None, noon(5));
    let later = app.task(&alice.token, &agent, "later", 0).await;
    record(&app, (&later, &ws), sonnet, (1_000_000, 0), None, noon(1));
    let other = app.task(&alice.token, &agent, "other", 0).await;
    record(
        &app,
        (&other, &ws),
        sonnet,
        (1_000_000, 0),
        Some(2_500_000_000),
        noon(1),
    );
    // and a model nobody prices
    record(
        &app,
        (&task, &ws),
        ("lab", "homebrew-7b"),
        (1200, 300),
        None,
        noon(1),
    );
    // from two days ago, $1 per million input tokens
    let r = app
        .put(
            &format!("/api/pricing/overrides?workspace_id={ws}"),
            &alice.token,
            json!({"provider": "anthropic", "model": "claude-sonnet-4-5",
                   "effective_from": date(2), "input_usd_per_mtok": 1.0,
                   "output_usd_per_mtok": 5.0, "cache_read_usd_per_mtok": 0.1,
                   "cache_write_usd_per_mtok": 1.25}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // the local days of the workspace's own zone are kept whole, but for
    // the day a price changes in (2 days ago, at 05:30 in Kolkata)
    for (workspace_zone, tz) in [
        ("UTC", ""),
        ("UTC", "&tz=Asia/Kolkata"),
        ("Asia/Kolkata", "&tz=Asia/Kolkata"),
        ("Asia/Kolkata", ""),
    ] {
        set_zone(&app, &alice.token, &ws, workspace_zone).await;
        let daily = rows(
            &app,
            &alice.token,
            &ws,
            &format!("/api/dashboard/usage/daily?days=7{tz}"),
        )
        .await;
        let cost = |day: u64, model: &str| -> Vec<(f64, i64)> {
            daily
                .iter()
                .filter(|r| r["date"] == date(day) && r["model"] == model)
                .map(|r| {
                    (
                        r["cost_usd"].as_f64().unwrap(),
                        r["uncosted_tokens"].as_i64().unwrap(),
                    )
                })
                .collect()
        };
        // $3 before the override; $1 after it, plus the $0.25 reported
        assert_eq!(cost(5, "claude-sonnet-4-5"), [(3.0, 0)], "{tz}");
        assert_eq!(cost(1, "claude-sonnet-4-5"), [(1.25, 0)], "{tz}");
        assert_eq!(cost(1, "homebrew-7b"), [(0.0, 1500)], "{tz}");

        let summary = rows(
            &app,
            &alice.token,
            &ws,
            &format!("/api/usage/summary?days=7{tz}"),
        )
        .await;
        let of = |model: &str| {
            summary
                .iter()
                .find(|r| r["model"] == model)
                .unwrap()
                .clone()
        };
        assert_eq!(of("claude-sonnet-4-5")["cost_usd"], 4.25);
        assert_eq!(of("claude-sonnet-4-5")["priced"], true);
        assert_eq!(of("homebrew-7b")["priced"], false);
        assert_eq!(of("homebrew-7b")["uncosted_tokens"], 1500);
        assert_eq!(of("homebrew-7b")["cost_usd"], 0.0);

        // the whole window per agent and per runtime adds up the same
        for page in [
            "/api/dashboard/usage/by-agent",
            "/api/dashboard/usage/by-runtime",
        ] {
            let got = rows(&app, &alice.token, &ws, &format!("{page}?days=7{tz}")).await;
            let sonnet: Vec<f64> = got
                .iter()
                .filter(|r| r["model"] == "claude-sonnet-4-5")
                .map(|r| r["cost_usd"].as_f64().unwrap())
                .collect();
            assert_eq!(sonnet, [4.25], "{page}{tz}");
            assert_eq!(got[0]["model"], "claude-sonnet-4-5", "costliest first");
            assert_eq!(got[0]["input_tokens"], 3_000_000);
            assert_eq!(got[0]["cost_usd_ticks"], 2_500_000_000i64);
            assert_eq!(got[0]["uncosted_input_tokens"], 2_000_000);
            assert_eq!(got[0]["task_count"], 3);
        }
    }
    // the window starts where it says: two days back holds only yesterday
    let summary = rows(&app, &alice.token, &ws, "/api/usage/summary?days=2").await;
    let sonnet = summary
        .iter()
        .find(|r| r["model"] == "claude-sonnet-4-5")
        .unwrap();
    assert_eq!(sonnet["total_input_tokens"], 2_000_000);
    assert_eq!(sonnet["cost_usd"], 1.25);
}

#[actix_web::test]
async fn private_agents_fold_into_one_row_for_members_who_may_not_see_them() {
    let app = spawn_app().await;
    let (alice, ws, rt, _, _) = workspace(&app).await;
    let shared = app
        .agent(&alice.token, &ws, &rt, json!({"visibility": "workspace"}))
        .await;
    let task = app.task(&alice.token, &shared, "shared", 0).await;
    let bob = app.add_user(
        "bob@example.com",
        Some((&ws, agenthub::domain::Role::Member)),
    );
    let secret = app
        .agent(&alice.token, &ws, &rt, json!({"visibility": "private"}))
        .await;
    let hidden_task = app.task(&alice.token, &secret, "secret", 0).await;
    let now = Utc::now() - chrono::Duration::minutes(5);
    record(&app, (&task, &ws), ("p", "m"), (10, 0), None, now);
    record(&app, (&hidden_task, &ws), ("p", "m"), (20, 0), None, now);
    record(&app, (&hidden_task, &ws), ("p", "n"), (40, 0), None, now);
    // both tasks run and end (with the first task of the workspace
    // claimed too)
    for _ in 0..3 {
        let r = app.claim(&alice.token, &rt).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    for t in [&task, &hidden_task] {
        let r = app
            .post(
                &format!("/api/daemon/tasks/{t}/start"),
                &alice.token,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let r = app
            .post(
                &format!("/api/daemon/tasks/{t}/complete"),
                &alice.token,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let agents = |rows: &[Value]| -> Vec<(String, String, i64)> {
        let mut out: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r["agent_id"].as_str().unwrap().to_string(),
                    r["model"].as_str().unwrap_or("").to_string(),
                    r["input_tokens"]
                        .as_i64()
                        .or(r["task_count"].as_i64())
                        .unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    };
    let by_agent = "/api/dashboard/usage/by-agent";
    let mut for_bob = vec![
        ("private".to_string(), "m".to_string(), 20),
        ("private".to_string(), "n".to_string(), 40),
        (shared.clone(), "m".to_string(), 10),
    ];
    for_bob.sort();
    assert_eq!(
        agents(&rows(&app, &bob.token, &ws, by_agent).await),
        for_bob
    );
    let mut for_alice = vec![
        (secret.clone(), "m".to_string(), 20),
        (secret.clone(), "n".to_string(), 40),
        (shared.clone(), "m".to_string(), 10),
    ];
    for_alice.sort();
    assert_eq!(
        agents(&rows(&app, &alice.token, &ws, by_agent).await),
        for_alice
    );

    let run_time = "/api/dashboard/agent-runtime";
    let mut for_bob = vec![
        ("private".to_string(), String::new(), 1),
        (shared.clone(), String::new(), 1),
    ];
    for_bob.sort();
    assert_eq!(
        agents(&rows(&app, &bob.token, &ws, run_time).await),
        for_bob
    );
    let mut for_alice = vec![
        (secret.clone(), String::new(), 1),
        (shared.clone(), String::new(), 1),
    ];
    for_alice.sort();
    assert_eq!(
        agents(&rows(&app, &alice.token, &ws, run_time).await),
        for_alice
    );

    // nobody outside the workspace reads it, or learns it exists
    let (mallory, _) = app.init_user("mallory@example.com");
    let r = app
        .get(&format!("{by_agent}?workspace_id={ws}"), &mallory.token)
        .await;
    assert_eq!((r.status, r.error()), (404, "workspace not found"));
}

#[actix_web::test]
async fn run_time_and_failures_count_how_tasks_ended() {
    let app = spawn_app().await;
    let (alice, ws, rt, agent, done) = workspace(&app).await;
    let failed = app.task(&alice.token, &agent, "fails", 0).await;
    let never_started = app.task(&alice.token, &agent, "fails early", 0).await;
    for _ in 0..3 {
        let r = app.claim(&alice.token, &rt).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    for (task, ran) in [(&done, 90), (&failed, 30)] {
        let r = app
            .post(
                &format!("/api/daemon/tasks/{task}/start"),
                &alice.token,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let id: TaskId = task.parse().unwrap();
        let at = Timestamp::from_utc(Utc::now() - chrono::Duration::seconds(ran));
        app.arrange(move |tx| backdate_task(tx, id, TaskClock::Started, at));
    }
    let end = |task: &str, how: &str, body: Value| {
        let (app, token) = (&app, alice.token.clone());
        let path = format!("/api/daemon/tasks/{task}/{how}");
        async move {
            let r = app.post(&path, &token, body).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
    };
    end(&done, "complete", json!({})).await;
    end(
        &failed,
        "fail",
        json!({"error": "quota", "failure_reason": "agent_error.provider_quota_limit"}),
    )
    .await;
    end(&never_started, "fail", json!({"error": "no binary"})).await;
    let cancelled = app.task(&alice.token, &agent, "cancelled", 0).await;
    let r = app
        .post(
            &format!("/api/tasks/{cancelled}/cancel"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // only tasks that started have a run time: 90 s + 30 s
    let got = rows(&app, &alice.token, &ws, "/api/dashboard/agent-runtime").await;
    assert_eq!(
        got,
        [
            json!({"agent_id": agent, "total_seconds": 120, "task_count": 2,
                "failed_count": 1, "cancelled_count": 0})
        ]
    );
    // every completed or failed task by its day and reason; '' completed
    let got = rows(&app, &alice.token, &ws, "/api/dashboard/failures/daily").await;
    let today = date(0);
    assert_eq!(
        got,
        [
            json!({"date": today, "failure_reason": "", "task_count": 1}),
            json!({"date": today, "failure_reason": "agent_error", "task_count": 1}),
            json!({"date": today, "failure_reason": "agent_error.provider_quota_limit", "task_count": 1}),
        ]
    );
    // a task ends once: ending it again changes nothing
    let r = app
        .post(
            &format!("/api/daemon/tasks/{done}/complete"),
            &alice.token,
            json!({}),
        )
        .await;
    assert!(r.status == 200 || r.status == 409, "{:?}", r.body);
    let again = rows(&app, &alice.token, &ws, "/api/dashboard/failures/daily").await;
    assert_eq!(again, got);
}

#[actix_web::test]
async fn past_totals_survive_deleting_the_runtime_and_bad_zones_are_refused() {
    let app = spawn_app().await;
    let (alice, ws, rt, agent, task) = workspace(&app).await;
    let r = app.claim(&alice.token, &rt).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let at = Utc::now() - chrono::Duration::minutes(5);
    record(
        &app,
        (&task, &ws),
        ("anthropic", "claude-sonnet-4-5"),
        (1_000_000, 0),
        None,
        at,
    );
    let pages = [
        "/api/usage/daily",
        "/api/usage/summary",
        "/api/dashboard/usage/daily",
        "/api/dashboard/usage/by-agent",
        "/api/dashboard/usage/by-runtime",
        "/api/dashboard/agent-runtime",
        "/api/dashboard/failures/daily",
    ];
    let mut before = Vec::new();
    for page in pages {
        before.push(rows(&app, &alice.token, &ws, page).await);
    }
    assert_eq!(before[4][0]["runtime_id"], rt.as_str());
    assert_eq!(before[4][0]["cost_usd"], 3.0);
    let r = app
        .post(
            &format!("/api/agents/{agent}/archive"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .delete(&format!("/api/runtimes/{rt}"), &alice.token)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // the agent went with its runtime: its rows keep their totals and
    // name no agent any more
    let gone = |rows: &[Value]| -> Vec<Value> {
        rows.iter()
            .map(|r| {
                let mut r = r.clone();
                if r.get("agent_id").is_some() {
                    r["agent_id"] = Value::Null;
                }
                r
            })
            .collect()
    };
    assert_eq!(
        app.count(&format!("SELECT count(*) FROM agent WHERE id = '{agent}'")),
        0
    );
    for (page, was) in pages.iter().zip(&before) {
        assert_eq!(
            rows(&app, &alice.token, &ws, page).await,
            gone(was),
            "{page}"
        );
    }
    for page in pages {
        let r = app
            .get(
                &format!("{page}?workspace_id={ws}&tz=Mars/Olympus"),
                &alice.token,
            )
            .await;
        assert_eq!(
            (r.status, r.error()),
            (400, "unknown time zone \"Mars/Olympus\""),
            "{page}"
        );
        // days outside 1..365 fall back to 30
        let r = app
            .get(&format!("{page}?workspace_id={ws}&days=0"), &alice.token)
            .await;
        assert_eq!(r.status, 200, "{page}");
    }
}

#[actix_web::test]
async fn a_runtimes_usage_page_is_exact_in_its_zone_and_priced() {
    let app = spawn_app().await;
    let (alice, ws, rt, _agent, task) = workspace(&app).await;
    let r = app.claim(&alice.token, &rt).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let tz: Tz = "Asia/Kolkata".parse().unwrap();
    let yesterday = Utc::now().with_timezone(&tz).date_naive() - Days::new(1);
    let start = midnight(tz, yesterday);
    let minute = chrono::Duration::minutes(1);
    let sonnet = "claude-sonnet-4-5";
    record(
        &app,
        (&task, &ws),
        ("claude", sonnet),
        (1_000_000, 0),
        None,
        start - minute,
    );
    record(
        &app,
        (&task, &ws),
        ("codex", sonnet),
        (0, 1_000_000),
        None,
        start + minute,
    );
    // an older daemon's own report of a day without task usage
    let two_days_ago = date(2);
    let r = app
        .post(
            &format!("/api/daemon/runtimes/{rt}/usage"),
            &alice.token,
            json!({"entries": [{"date": two_days_ago, "provider": "claude", "model": "gpt-5",
                                "input_tokens": 2_000_000}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let page = |query: &str| {
        let (app, token) = (&app, alice.token.clone());
        let path = format!("/api/runtimes/{rt}/usage?days=7{query}");
        async move {
            let r = app.get(&path, &token).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            r.body
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["date"].as_str().unwrap().to_string(),
                        r["provider"].as_str().unwrap().to_string(),
                        r["cost_usd"].as_f64().unwrap(),
                        r["source"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let fmt = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    // Sonnet: $3 per million input tokens, $15 per million output; the
    // report at gpt-5's $1.25 (priced as the model's vendor, OpenAI)
    let got = page("&tz=Asia/Kolkata").await;
    let row = |date: String, provider: &str, cost: f64, source: &str| {
        (date, provider.to_string(), cost, source.to_string())
    };
    assert!(
        got.contains(&row(fmt(yesterday), "codex", 15.0, "task_usage")),
        "{got:?}"
    );
    assert!(
        got.contains(&row(
            fmt(yesterday - Days::new(1)),
            "claude",
            3.0,
            "task_usage"
        )),
        "{got:?}"
    );
    assert!(
        got.contains(&row(two_days_ago.clone(), "claude", 2.5, "runtime_report")),
        "{got:?}"
    );
    let r = app
        .get(
            &format!("/api/runtimes/{rt}/usage?tz=Mars/Olympus"),
            &alice.token,
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (400, "unknown time zone \"Mars/Olympus\"")
    );
}

#[actix_web::test]
async fn the_upgrade_builds_the_rollups_that_writes_and_endings_keep() {
    let app = spawn_app().await;
    let (alice, ws, rt, agent, task) = workspace(&app).await;
    let unclaimed = app.task(&alice.token, &agent, "never claimed", 0).await;
    let r = app.claim(&alice.token, &rt).await;
    assert_eq!(r.body["task"]["id"], task.as_str(), "the older task first");
    let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    record(
        &app,
        (&task, &ws),
        ("anthropic", "claude-sonnet-4-5"),
        (100, 10),
        None,
        at("2026-11-02T18:20:00Z"),
    );
    // a running total replaces the first (its bucket stays)
    record(
        &app,
        (&task, &ws),
        ("anthropic", "claude-sonnet-4-5"),
        (300, 30),
        Some(7_000),
        at("2026-11-02T18:50:00Z"),
    );
    record(
        &app,
        (&task, &ws),
        ("bedrock", "claude-sonnet-4-5"),
        (5, 0),
        None,
        at("2026-11-03T01:10:00Z"),
    );
    record(
        &app,
        (&task, &ws),
        ("lab", "homebrew"),
        (9, 1),
        None,
        at("2026-10-20T23:59:00Z"),
    );
    record(
        &app,
        (&unclaimed, &ws),
        ("openai", "gpt-5"),
        (50, 5),
        None,
        at("2026-11-02T18:35:00Z"),
    );
    for how in ["start", "fail"] {
        let r = app
            .post(
                &format!("/api/daemon/tasks/{task}/{how}"),
                &alice.token,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = app
        .post(
            &format!("/api/tasks/{unclaimed}/cancel"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let tables = [
        "usage_block",
        "usage_agent_block",
        "runtime_usage_quarter",
        "task_outcome_block",
        "task_outcome_agent_block",
    ];
    let all = |table: &str| format!("SELECT * FROM {table} ORDER BY 1, 2, 3, 4, 5, 6, 7");
    let kept: Vec<_> = tables.iter().map(|t| app.select(&all(t))).collect();
    assert!(kept.iter().all(|rows| !rows.is_empty()));

    let (migration, cleanup) = match &app.database {
        common::TestDb::Sqlite(_) => (
            include_str!("../migrations/sqlite/V17__usage_blocks.sql"),
            "DROP VIEW usage_seed_block; DROP TABLE usage_span; DROP TABLE usage_seed;",
        ),
        common::TestDb::Postgres(_) => (
            include_str!("../migrations/postgres/V10__usage_blocks.sql"),
            "DROP VIEW usage_seed_block; DROP TABLE usage_seed;",
        ),
    };
    let slice = |from: &str, to: &str| {
        let start = migration.find(from).expect(from);
        let end = start + migration[start..].find(to).expect(to);
        migration[start..end].to_string()
    };
    let usage = slice(
        "CREATE TEMP TABLE usage_seed",
        "DROP INDEX runtime_usage_quarter_workspace_idx",
    );
    let outcomes = slice(
        "INSERT INTO task_outcome_block (workspace_id",
        "-- A task counts once",
    );
    // (runtime_usage_quarter stays: the agent blocks are built from it)
    for table in tables.iter().filter(|t| **t != "runtime_usage_quarter") {
        common::batch(&app.database, &format!("DELETE FROM {table}"));
    }
    common::batch(&app.database, &format!("{usage}\n{cleanup}\n{outcomes}"));
    for (table, rows) in tables.iter().zip(&kept) {
        assert_eq!(&app.select(&all(table)), rows, "{table}");
    }
}

#[actix_web::test]
async fn the_workspace_zone_keeps_whole_local_days_through_a_new_zone_and_a_restart() {
    let app = spawn_app().await;
    let (alice, ws, _rt, _agent, task) = workspace(&app).await;
    let tz: Tz = "Asia/Kathmandu".parse().unwrap();
    let yesterday = Utc::now().with_timezone(&tz).date_naive() - Days::new(1);
    let start = midnight(tz, yesterday);
    let minute = chrono::Duration::minutes(1);
    // before the workspace is in Kathmandu: a minute either side of its
    // midnight (18:15 UTC)
    record(
        &app,
        (&task, &ws),
        ("p", "before"),
        (3, 0),
        None,
        start - minute,
    );
    record(
        &app,
        (&task, &ws),
        ("p", "after"),
        (5, 0),
        None,
        start + minute,
    );
    set_zone(&app, &alice.token, &ws, "Asia/Kathmandu").await;
    // and after
    record(
        &app,
        (&task, &ws),
        ("p", "later"),
        (7, 0),
        None,
        start + minute * 2,
    );
    let fmt = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    let want = vec![
        (fmt(yesterday), "after".to_string(), 5),
        (fmt(yesterday), "later".to_string(), 7),
        (fmt(yesterday - Days::new(1)), "before".to_string(), 3),
    ];
    let pages = ["/api/usage/daily", "/api/dashboard/usage/daily"];
    let daily = |page: &'static str| {
        let (app, token, ws) = (&app, alice.token.clone(), ws.clone());
        async move {
            let got = rows(
                app,
                &token,
                &ws,
                &format!("{page}?days=7&tz=Asia/Kathmandu"),
            )
            .await;
            let mut got: Vec<_> = days_of(&got, "");
            got.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            got
        }
    };
    for page in pages {
        assert_eq!(daily(page).await, want, "{page}");
    }
    // one row per local day and model, starting at Kathmandu's midnights
    let key = |t: DateTime<Utc>| match &app.database {
        common::TestDb::Sqlite(_) => json!(t.format("%Y-%m-%dT%H:%M").to_string()),
        common::TestDb::Postgres(_) => json!(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
    };
    let days_sql = "SELECT bucket, model, input_tokens FROM usage_zone_day ORDER BY 1, 2";
    let kept = app.select(days_sql);
    assert_eq!(
        kept.iter()
            .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
            .collect::<Vec<_>>(),
        [
            (
                key(midnight(tz, yesterday - Days::new(1))),
                json!("before"),
                json!(3)
            ),
            (key(start), json!("after"), json!(5)),
            (key(start), json!("later"), json!(7)),
        ]
    );
    // the pages read those rows: what they hold is what the pages say
    common::batch(
        &app.database,
        "UPDATE usage_zone_day SET input_tokens = input_tokens + 1000 WHERE model = 'later'",
    );
    assert_eq!(daily(pages[0]).await[1].2, 1007);
    common::batch(
        &app.database,
        "UPDATE usage_zone_day SET input_tokens = input_tokens - 1000 WHERE model = 'later'",
    );

    // a database whose zone days are still UTC's while the workspace is
    // in Kathmandu (as the upgrade that adds them leaves it): the store
    // rebuilds them when it opens
    common::batch(
        &app.database,
        "UPDATE workspace SET day_zone = 'UTC';
         DELETE FROM usage_zone_day;",
    );
    let mut config = agenthub::config::Config::default();
    match &app.database {
        common::TestDb::Sqlite(path) => config.database.path = path.clone(),
        common::TestDb::Postgres(url) => config.database.url = Some(url.clone()),
    }
    common::off_runtime(|| agenthub::store::Store::open_default(&config.database).map(drop))
        .expect("the store opens");
    assert_eq!(app.select(days_sql), kept);
    assert_eq!(
        app.select("SELECT day_zone FROM workspace"),
        [[json!("Asia/Kathmandu")]]
    );
    for page in pages {
        assert_eq!(daily(page).await, want, "{page} after the restart");
    }
}
