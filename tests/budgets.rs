//! Budgets that act (issue: prices, budgets and usage by runtime, agent,
//! provider and model): spend counted from usage reports, claims held
//! back at the limit and released on a raise or at rollover, the
//! workspace's zone deciding the periods, against hand-computed figures.
//!
//! Prices used: `claude-sonnet-4-5` lists $3 per million input tokens, so
//! 1,000,000 input tokens cost $3.00; a reported cost of 10^10 ticks is
//! $1.00.

mod common;

use agenthub::domain::{BudgetId, TaskId, Timestamp, WorkspaceId};
use agenthub::store::budgets;
use agenthub::store::usage::{upsert_task_usage_with_cost, UsageEntry};
use chrono::{Datelike, TimeZone, Utc};
use chrono_tz::Tz;
use common::{follow, parse_id, read_until, spawn_app, Reply, TestApp};
use serde_json::{json, Value};

/// A request about workspace `ws` (named in `X-Workspace-ID`).
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    ws: &str,
    body: Option<Value>,
) -> Reply {
    let body = body.map(|b| b.to_string());
    app.request_with_headers(
        method,
        path,
        Some(token),
        body.as_deref(),
        &[("X-Workspace-ID", ws)],
    )
    .await
}

/// Sets a budget; 201 and the budget.
async fn set_budget(app: &TestApp, token: &str, ws: &str, body: Value) -> Value {
    let r = call(app, "POST", "/api/budgets", token, ws, Some(body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

/// `GET /api/budgets`, by id.
async fn budget(app: &TestApp, token: &str, ws: &str, id: &str) -> Value {
    let r = call(app, "GET", "/api/budgets", token, ws, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("budget {id} not listed: {:?}", r.body))
}

/// Reports a task's running totals the way a daemon does: `input` tokens
/// of claude-sonnet-4-5, or a model of no price with its reported cost.
async fn report(app: &TestApp, token: &str, task: &str, input: i64, cost_ticks: Option<i64>) {
    let entry = match cost_ticks {
        None => json!({"provider": "claude", "model": "claude-sonnet-4-5", "input_tokens": input}),
        Some(ticks) => json!({"provider": "claude", "model": "house-model",
                              "input_tokens": input, "cost_usd_ticks": ticks}),
    };
    let r = app
        .post(
            &format!("/api/daemon/tasks/{task}/usage"),
            token,
            json!({"usage": [entry]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// The claimed task's id, or `None`.
async fn claim(app: &TestApp, token: &str, runtime: &str) -> Option<String> {
    let r = app.claim(token, runtime).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["task"]["id"].as_str().map(str::to_string)
}

/// `blocked_reason` of each of the agent's tasks, by task id.
async fn blocked_reasons(app: &TestApp, token: &str, agent: &str) -> Vec<(String, Value)> {
    let r = app.get(&format!("/api/agents/{agent}/tasks"), token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_string(),
                t["blocked_reason"].clone(),
            )
        })
        .collect()
}

fn reason_of(reasons: &[(String, Value)], task: &str) -> Value {
    reasons
        .iter()
        .find(|(id, _)| id == task)
        .map(|(_, r)| r.clone())
        .unwrap_or_else(|| panic!("task {task} not listed"))
}

fn usd(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Where today and tomorrow start in `tz`, as the API writes times.
fn day_bounds(tz: Tz) -> (String, String) {
    let today = Utc::now().with_timezone(&tz).date_naive();
    let at = |d: chrono::NaiveDate| {
        tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    (at(today), at(today.succ_opt().unwrap()))
}

/// Where this month and the next start in `tz`.
fn month_bounds(tz: Tz) -> (String, String) {
    let first = Utc::now()
        .with_timezone(&tz)
        .date_naive()
        .with_day(1)
        .unwrap();
    let next = first.checked_add_months(chrono::Months::new(1)).unwrap();
    let at = |d: chrono::NaiveDate| {
        tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    (at(first), at(next))
}

#[actix_web::test]
async fn a_budget_blocks_claims_at_its_limit_and_releases_on_a_raise_and_at_rollover() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let a = alice.token.as_str();
    let rt = app.runtime(a, &ws, "mbp", "claude").await;
    let agent = app
        .agent(a, &ws, &rt, json!({"max_concurrent_tasks": 10}))
        .await;
    let mut events = follow(&app, a, &ws).await;

    let b = set_budget(
        &app,
        a,
        &ws,
        json!({"scope": "workspace", "period": "daily", "limit_usd": 5, "warn_percent": 50}),
    )
    .await;
    let id = b["id"].as_str().unwrap().to_string();
    let (start, end) = day_bounds(chrono_tz::UTC);
    assert_eq!(
        (&b["scope"], &b["scope_id"], &b["period"]),
        (&json!("workspace"), &json!(null), &json!("daily"))
    );
    assert_eq!(
        (
            usd(&b["limit_usd"]),
            usd(&b["spent_usd"]),
            usd(&b["remaining_usd"])
        ),
        (5.0, 0.0, 5.0)
    );
    assert_eq!(
        (
            b["period_start"].as_str().unwrap(),
            b["period_end"].as_str().unwrap()
        ),
        (start.as_str(), end.as_str())
    );
    assert_eq!(
        (&b["blocked"], &b["warn_percent"]),
        (&json!(false), &json!(50))
    );

    let t1 = app.task(a, &agent, "one", 0).await;
    assert_eq!(claim(&app, a, &rt).await.as_deref(), Some(t1.as_str()));
    // $3 of $5: past the 50 % warning, under the limit
    report(&app, a, &t1, 1_000_000, None).await;
    let b = budget(&app, a, &ws, &id).await;
    assert_eq!(
        (
            usd(&b["spent_usd"]),
            usd(&b["remaining_usd"]),
            &b["blocked"]
        ),
        (3.0, 2.0, &json!(false))
    );
    let mut seen = read_until(&mut events, "event: budget:warning").await;

    let t2 = app.task(a, &agent, "two", 0).await;
    let t3 = app.task(a, &agent, "three", 0).await;
    // running totals: 2,000,000 tokens in all, $6 — the limit is reached
    report(&app, a, &t1, 2_000_000, None).await;
    let b = budget(&app, a, &ws, &id).await;
    assert_eq!(
        (
            usd(&b["spent_usd"]),
            usd(&b["remaining_usd"]),
            &b["blocked"]
        ),
        (6.0, 0.0, &json!(true))
    );
    assert_eq!(b["blocked_until"], end.as_str());
    seen.push_str(&read_until(&mut events, "event: budget:exceeded").await);
    assert!(seen.contains(&format!("\"id\":\"{id}\"")), "{seen}");

    // the queued work waits, and says why; the running task does not
    assert_eq!(claim(&app, a, &rt).await, None);
    assert_eq!(app.task_status(&t2), "queued");
    let reasons = blocked_reasons(&app, a, &agent).await;
    assert_eq!(reason_of(&reasons, &t2), "budget_exceeded");
    assert_eq!(reason_of(&reasons, &t3), "budget_exceeded");
    assert_eq!(reason_of(&reasons, &t1), json!(null));
    // a task queued now says so in its reply
    let r = app
        .post(
            &format!("/api/agents/{agent}/tasks"),
            a,
            json!({"prompt": "four"}),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["blocked_reason"]),
        (201, &json!("budget_exceeded"))
    );
    let t4 = r.body["id"].as_str().unwrap().to_string();

    // more spend in the same period publishes nothing again
    report(&app, a, &t1, 2_500_000, None).await;
    assert_eq!(usd(&budget(&app, a, &ws, &id).await["spent_usd"]), 7.5);
    // a report that lowers the task's totals takes nothing back and
    // lifts no block (only a raise, a deletion or the next period do)
    report(&app, a, &t1, 0, None).await;
    let b = budget(&app, a, &ws, &id).await;
    assert_eq!((usd(&b["spent_usd"]), &b["blocked"]), (7.5, &json!(true)));
    assert_eq!(claim(&app, a, &rt).await, None);

    // a raise past the spend releases the queue at once
    let r = call(
        &app,
        "PUT",
        &format!("/api/budgets/{id}"),
        a,
        &ws,
        Some(json!({"limit_usd": 10})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (
            usd(&r.body["remaining_usd"]),
            &r.body["blocked"],
            &r.body["blocked_until"]
        ),
        (2.5, &json!(false), &json!(null))
    );
    assert_eq!(
        reason_of(&blocked_reasons(&app, a, &agent).await, &t3),
        json!(null)
    );
    assert_eq!(claim(&app, a, &rt).await.as_deref(), Some(t2.as_str()));

    // lowered under the spend: blocked again, and reported again
    let r = call(
        &app,
        "PUT",
        &format!("/api/budgets/{id}"),
        a,
        &ws,
        Some(json!({"limit_usd": 7})),
    )
    .await;
    assert_eq!((r.status, &r.body["blocked"]), (200, &json!(true)));
    seen.push_str(&read_until(&mut events, "event: budget:exceeded").await);
    assert_eq!(claim(&app, a, &rt).await, None);

    // the next day: nothing spent, nothing blocked
    let (w, b): (WorkspaceId, BudgetId) = (parse_id(&ws), parse_id(&id));
    app.arrange(move |tx| budgets::backdate(tx, w, b, chrono::Duration::days(1)));
    let b = budget(&app, a, &ws, &id).await;
    assert_eq!(
        (
            usd(&b["spent_usd"]),
            usd(&b["remaining_usd"]),
            &b["blocked"]
        ),
        (0.0, 7.0, &json!(false))
    );
    assert_eq!(
        reason_of(&blocked_reasons(&app, a, &agent).await, &t3),
        json!(null)
    );
    assert_eq!(claim(&app, a, &rt).await.as_deref(), Some(t3.as_str()));
    // a report in the new period starts its counter again ($4.50 of $7:
    // past the warning line, which warns again in this period)
    report(&app, a, &t2, 1_500_000, None).await;
    let b = budget(&app, a, &ws, &id).await;
    assert_eq!((usd(&b["spent_usd"]), &b["blocked"]), (4.5, &json!(false)));
    // warned once, exceeded once per limit reached (twice), nothing more
    seen.push_str(&read_until(&mut events, "event: budget:warning").await);
    assert_eq!(seen.matches("event: budget:exceeded").count(), 2, "{seen}");
    assert_eq!(seen.matches("event: budget:warning").count(), 2, "{seen}");
    assert_eq!(claim(&app, a, &rt).await.as_deref(), Some(t4.as_str()));
}

#[actix_web::test]
async fn agent_and_member_budgets_hold_back_only_the_tasks_they_charge() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user(
        "bob@example.com",
        Some((&ws, agenthub::domain::Role::Member)),
    );
    let a = alice.token.as_str();
    let rt = app.runtime(a, &ws, "mbp", "claude").await;
    let shared = json!({"visibility": "workspace", "max_concurrent_tasks": 10});
    let agent_a = app.agent(a, &ws, &rt, shared.clone()).await;
    let agent_b = app.agent(a, &ws, &rt, shared).await;
    let on_a = set_budget(
        &app,
        a,
        &ws,
        json!({"scope": "agent", "scope_id": agent_a, "period": "daily", "limit_usd": 1}),
    )
    .await;
    let on_bob = set_budget(
        &app,
        a,
        &ws,
        json!({"scope": "member", "scope_id": bob.id, "period": "monthly", "limit_usd": 1}),
    )
    .await;

    // agent A spends $3: its own tasks wait, agent B's do not
    let ta = app.task(a, &agent_a, "a1", 0).await;
    assert_eq!(claim(&app, a, &rt).await.as_deref(), Some(ta.as_str()));
    report(&app, a, &ta, 1_000_000, None).await;
    let a2 = app.task(a, &agent_a, "a2", 5).await;
    let bob1 = app.task(&bob.token, &agent_b, "bob1", 0).await;
    assert_eq!(claim(&app, a, &rt).await.as_deref(), Some(bob1.as_str()));
    // bob's task spends $1 (reported): bob's budget is reached
    report(&app, a, &bob1, 10, Some(10_000_000_000)).await;
    let bob2 = app.task(&bob.token, &agent_b, "bob2", 9).await;
    let alice_b = app.task(a, &agent_b, "alice-b", 0).await;
    // agent B's first task in claim order is bob's; alice's is next
    assert_eq!(claim(&app, a, &rt).await.as_deref(), Some(alice_b.as_str()));
    assert_eq!(claim(&app, a, &rt).await, None);
    assert_eq!(
        (app.task_status(&a2), app.task_status(&bob2)),
        ("queued".into(), "queued".into())
    );
    assert_eq!(
        reason_of(&blocked_reasons(&app, a, &agent_a).await, &a2),
        "budget_exceeded"
    );
    assert_eq!(
        reason_of(&blocked_reasons(&app, &bob.token, &agent_b).await, &bob2),
        "budget_exceeded"
    );

    // the budget of a private agent is its owner's and the managers' to see
    let private = app
        .agent(a, &ws, &rt, json!({"visibility": "private"}))
        .await;
    let hidden = set_budget(
        &app,
        a,
        &ws,
        json!({"scope": "agent", "scope_id": private, "period": "daily", "limit_usd": 1}),
    )
    .await;
    let listed = |r: Reply| -> Vec<String> {
        r.body
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect()
    };
    let bobs_view = listed(call(&app, "GET", "/api/budgets", &bob.token, &ws, None).await);
    assert_eq!(bobs_view.len(), 2, "{bobs_view:?}");
    assert!(!bobs_view.contains(&hidden["id"].as_str().unwrap().to_string()));
    assert_eq!(
        listed(call(&app, "GET", "/api/budgets", a, &ws, None).await).len(),
        3
    );

    let a_id = on_a["id"].as_str().unwrap();
    let bob_id = on_bob["id"].as_str().unwrap();
    let b = budget(&app, &bob.token, &ws, a_id).await;
    assert_eq!((usd(&b["spent_usd"]), &b["blocked"]), (3.0, &json!(true)));
    let b = budget(&app, &bob.token, &ws, bob_id).await;
    assert_eq!((usd(&b["spent_usd"]), &b["blocked"]), (1.0, &json!(true)));
    // deleting bob's budget frees his task; agent A's still waits
    let r = call(
        &app,
        "DELETE",
        &format!("/api/budgets/{bob_id}"),
        a,
        &ws,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(claim(&app, a, &rt).await.as_deref(), Some(bob2.as_str()));
    assert_eq!(claim(&app, a, &rt).await, None);
}

#[actix_web::test]
async fn concurrent_claims_at_the_edge_of_a_budget_dispatch_nothing_it_blocks() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let a = alice.token.as_str();
    let mut runtimes = Vec::new();
    let mut agents = Vec::new();
    for n in 0..4 {
        let rt = app.runtime(a, &ws, &format!("m{n}"), "claude").await;
        agents.push(
            app.agent(a, &ws, &rt, json!({"max_concurrent_tasks": 20}))
                .await,
        );
        runtimes.push(rt);
    }
    let b = set_budget(
        &app,
        a,
        &ws,
        json!({"scope": "workspace", "period": "daily", "limit_usd": 1}),
    )
    .await;
    let id = b["id"].as_str().unwrap().to_string();
    let first = app.task(a, &agents[0], "first", 0).await;
    assert_eq!(
        claim(&app, a, &runtimes[0]).await.as_deref(),
        Some(first.as_str())
    );
    for agent in &agents {
        for n in 0..5 {
            app.task(a, agent, &format!("{n}"), 0).await;
        }
    }
    let queued = || {
        app.count(&format!(
            "SELECT count(*) FROM agent_task_queue WHERE workspace_id = '{ws}' AND status = 'queued'"
        ))
    };
    assert_eq!(queued(), 20);

    // claims from every runtime race the report that reaches the limit
    // ($1.00 reported, exactly the limit); each claim may win or lose
    // that race, but none sent after the report's reply may dispatch
    let racing = futures_util::future::join_all((0..8).map(|n| claim(&app, a, &runtimes[n % 4])));
    let ((), won) = futures_util::join!(report(&app, a, &first, 10, Some(10_000_000_000)), racing);
    let won = won.iter().flatten().count();
    let after =
        futures_util::future::join_all((0..20).map(|n| claim(&app, a, &runtimes[n % 4]))).await;
    assert!(after.iter().all(Option::is_none), "{after:?}");
    assert_eq!(queued(), 20 - won as i64);
    let b = budget(&app, a, &ws, &id).await;
    assert_eq!(
        (
            usd(&b["spent_usd"]),
            usd(&b["remaining_usd"]),
            &b["blocked"]
        ),
        (1.0, 0.0, &json!(true))
    );

    // raised by $1: the whole queue may run again, each task once
    let r = call(
        &app,
        "PUT",
        &format!("/api/budgets/{id}"),
        a,
        &ws,
        Some(json!({"limit_usd": 2})),
    )
    .await;
    assert_eq!(r.status, 200);
    let got =
        futures_util::future::join_all((0..40).map(|n| claim(&app, a, &runtimes[n % 4]))).await;
    let mut got: Vec<String> = got.into_iter().flatten().collect();
    let claimed = got.len();
    got.sort();
    got.dedup();
    assert_eq!((claimed, got.len()), (20 - won, 20 - won));
    assert_eq!(queued(), 0);
}

/// Records usage through the store at `at` (for history before now).
fn record(app: &TestApp, task: &str, ws: &str, input: i64, at: chrono::DateTime<Utc>) {
    let (task, ws): (TaskId, WorkspaceId) = (parse_id(task), parse_id(ws));
    let entry = UsageEntry {
        provider: "claude".into(),
        model: "claude-sonnet-4-5".into(),
        input_tokens: input,
        ..Default::default()
    };
    app.db
        .write_blocking(move |tx| {
            upsert_task_usage_with_cost(tx, task, ws, &entry, None, Timestamp::from_utc(at))
                .map(|_| ())
        })
        .unwrap();
}

#[actix_web::test]
async fn periods_follow_the_workspace_zone_and_a_new_budget_starts_from_its_period_usage() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user(
        "bob@example.com",
        Some((&ws, agenthub::domain::Role::Member)),
    );
    let a = alice.token.as_str();
    let rt = app.runtime(a, &ws, "mbp", "claude").await;
    let agent = app
        .agent(
            a,
            &ws,
            &rt,
            json!({"visibility": "workspace", "max_concurrent_tasks": 10}),
        )
        .await;
    let other = app
        .agent(a, &ws, &rt, json!({"visibility": "workspace"}))
        .await;

    let r = call(
        &app,
        "PATCH",
        &format!("/api/workspaces/{ws}"),
        a,
        &ws,
        Some(json!({"timezone": "Asia/Kolkata"})),
    )
    .await;
    assert_eq!(
        (r.status, &r.body["timezone"]),
        (200, &json!("Asia/Kolkata"))
    );
    assert_eq!(
        app.get(&format!("/api/workspaces/{ws}"), a).await.body["timezone"],
        "Asia/Kolkata"
    );

    // this month: alice's task on `agent` used $3 (and $3 more 40 days
    // ago); bob's task on `other` reported $2
    let mine = app.task(a, &agent, "mine", 0).await;
    let old = app.task(a, &agent, "old", 0).await;
    let bobs = app.task(&bob.token, &other, "bobs", 0).await;
    record(&app, &mine, &ws, 1_000_000, Utc::now());
    record(
        &app,
        &old,
        &ws,
        1_000_000,
        Utc::now() - chrono::Duration::days(40),
    );
    claim(&app, a, &rt).await;
    claim(&app, a, &rt).await;
    claim(&app, a, &rt).await;
    report(&app, a, &bobs, 10, Some(20_000_000_000)).await;

    let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
    let (month_start, month_end) = month_bounds(kolkata);
    let (day_start, day_end) = day_bounds(kolkata);
    let cases = [
        (
            json!({"scope": "workspace", "period": "monthly", "limit_usd": 100}),
            5.0,
            (&month_start, &month_end),
        ),
        (
            json!({"scope": "workspace", "period": "daily", "limit_usd": 100}),
            5.0,
            (&day_start, &day_end),
        ),
        (
            json!({"scope": "agent", "scope_id": agent, "period": "monthly", "limit_usd": 100}),
            3.0,
            (&month_start, &month_end),
        ),
        (
            json!({"scope": "agent", "scope_id": other, "period": "daily", "limit_usd": 100}),
            2.0,
            (&day_start, &day_end),
        ),
        (
            json!({"scope": "member", "scope_id": alice.id, "period": "monthly", "limit_usd": 100}),
            3.0,
            (&month_start, &month_end),
        ),
        (
            json!({"scope": "member", "scope_id": bob.id, "period": "daily", "limit_usd": 100}),
            2.0,
            (&day_start, &day_end),
        ),
    ];
    for (body, spent, (start, end)) in cases {
        let b = set_budget(&app, a, &ws, body.clone()).await;
        assert_eq!(usd(&b["spent_usd"]), spent, "{body}");
        assert_eq!(usd(&b["remaining_usd"]), 100.0 - spent, "{body}");
        assert_eq!(
            (
                b["period_start"].as_str().unwrap(),
                b["period_end"].as_str().unwrap()
            ),
            (start.as_str(), end.as_str()),
            "{body}"
        );
    }
    // a budget that starts at its limit blocks at once
    let r = call(
        &app,
        "POST",
        "/api/budgets",
        a,
        &ws,
        Some(json!({"scope": "agent", "scope_id": agent, "period": "daily", "limit_usd": 3})),
    )
    .await;
    assert_eq!(
        (r.status, &r.body["blocked"], &r.body["blocked_until"]),
        (201, &json!(true), &json!(day_end))
    );
    let waiting = app.task(a, &agent, "waits", 0).await;
    assert_eq!(claim(&app, a, &rt).await, None);
    assert_eq!(
        reason_of(&blocked_reasons(&app, a, &agent).await, &waiting),
        "budget_exceeded"
    );
    let at_limit = r.body["id"].as_str().unwrap().to_string();

    // a new zone: every counter starts over in its periods, from the usage
    // stored for them, so nothing spent today is forgotten
    let r = call(
        &app,
        "PATCH",
        &format!("/api/workspaces/{ws}"),
        a,
        &ws,
        Some(json!({"timezone": "Asia/Kathmandu"})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let kathmandu: Tz = "Asia/Kathmandu".parse().unwrap();
    let (day_start, day_end) = day_bounds(kathmandu);
    let b = budget(&app, a, &ws, &at_limit).await;
    assert_eq!((usd(&b["spent_usd"]), &b["blocked"]), (3.0, &json!(true)));
    assert_eq!(
        (
            b["period_start"].as_str().unwrap(),
            b["blocked_until"].as_str().unwrap()
        ),
        (day_start.as_str(), day_end.as_str())
    );
    let listed = call(&app, "GET", "/api/budgets", a, &ws, None).await.body;
    let whole_day = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["scope"] == "workspace" && b["period"] == "daily")
        .unwrap();
    assert_eq!(
        (
            usd(&whole_day["spent_usd"]),
            whole_day["period_start"].as_str().unwrap()
        ),
        (5.0, day_start.as_str())
    );
    assert_eq!(claim(&app, a, &rt).await, None);
}

#[actix_web::test]
async fn bad_budget_requests_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user(
        "bob@example.com",
        Some((&ws, agenthub::domain::Role::Member)),
    );
    let (mallory, mws) = app.init_user("mallory@example.com");
    let a = alice.token.as_str();
    let rt = app.runtime(a, &ws, "mbp", "claude").await;
    let agent = app.agent(a, &ws, &rt, json!({})).await;
    let mrt = app.runtime(&mallory.token, &mws, "evil", "claude").await;
    let malloys_agent = app.agent(&mallory.token, &mws, &mrt, json!({})).await;
    let kept = set_budget(
        &app,
        a,
        &ws,
        json!({"scope": "workspace", "period": "daily", "limit_usd": 5}),
    )
    .await;
    let kept = kept["id"].as_str().unwrap().to_string();
    let before = app.dump();

    let bad = [
        (
            json!({"period": "daily", "limit_usd": 1}),
            400,
            "scope is required",
        ),
        (
            json!({"scope": "team", "period": "daily", "limit_usd": 1}),
            400,
            "scope must be workspace, agent or member",
        ),
        (
            json!({"scope": "workspace", "period": "weekly", "limit_usd": 1}),
            400,
            "period must be daily or monthly",
        ),
        (
            json!({"scope": "workspace", "scope_id": agent, "period": "daily", "limit_usd": 1}),
            400,
            "scope_id must be null for a workspace budget",
        ),
        (
            json!({"scope": "agent", "period": "daily", "limit_usd": 1}),
            400,
            "scope_id is required for an agent budget",
        ),
        (
            json!({"scope": "member", "scope_id": "bob", "period": "daily", "limit_usd": 1}),
            400,
            "",
        ),
        (
            json!({"scope": "workspace", "period": "monthly"}),
            400,
            "limit_usd is required",
        ),
        (
            json!({"scope": "workspace", "period": "monthly", "limit_usd": 0}),
            400,
            "",
        ),
        (
            json!({"scope": "workspace", "period": "monthly", "limit_usd": -3}),
            400,
            "",
        ),
        (
            json!({"scope": "workspace", "period": "monthly", "limit_usd": 100000001}),
            400,
            "",
        ),
        (
            json!({"scope": "workspace", "period": "monthly", "limit_usd": 1.0000001}),
            400,
            "",
        ),
        (
            json!({"scope": "workspace", "period": "monthly", "limit_usd": "5"}),
            400,
            "",
        ),
        (
            json!({"scope": "workspace", "period": "monthly", "limit_usd": 5, "warn_percent": 0}),
            400,
            "warn_percent must be a whole number from 1 to 100",
        ),
        (
            json!({"scope": "workspace", "period": "monthly", "limit_usd": 5, "warn_percent": 101}),
            400,
            "warn_percent must be a whole number from 1 to 100",
        ),
        (
            json!({"scope": "workspace", "period": "monthly", "limit_usd": 5, "spent_usd": 0}),
            400,
            "spent_usd is not a budget field (scope, scope_id, period, limit_usd, warn_percent)",
        ),
        (
            json!({"scope": "agent", "scope_id": malloys_agent, "period": "daily", "limit_usd": 1}),
            404,
            "agent not found",
        ),
        (
            json!({"scope": "member", "scope_id": mallory.id, "period": "daily", "limit_usd": 1}),
            404,
            "member not found (scope_id is the member's user id)",
        ),
        (
            json!({"scope": "workspace", "period": "daily", "limit_usd": 9}),
            409,
            "a daily budget of this workspace exists already: change it with PUT",
        ),
    ];
    for (body, status, message) in bad {
        let r = call(&app, "POST", "/api/budgets", a, &ws, Some(body.clone())).await;
        assert_eq!(r.status, status, "{body}: {:?}", r.body);
        if !message.is_empty() {
            assert_eq!(r.error(), message, "{body}");
        }
    }
    let one = format!("/api/budgets/{kept}");
    for (body, message) in [
        (
            json!({}),
            "nothing to change: give limit_usd or warn_percent",
        ),
        (json!({"limit_usd": 0}), ""),
        (
            json!({"warn_percent": 3.5}),
            "warn_percent must be a whole number from 1 to 100",
        ),
        (
            json!({"period": "monthly"}),
            "period is not a budget field (limit_usd, warn_percent)",
        ),
    ] {
        let r = call(&app, "PUT", &one, a, &ws, Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        if !message.is_empty() {
            assert_eq!(r.error(), message, "{body}");
        }
    }
    // a plain member may read budgets, not set them
    let r = call(
        &app,
        "POST",
        "/api/budgets",
        &bob.token,
        &ws,
        Some(json!({"scope": "workspace", "period": "monthly", "limit_usd": 1})),
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (403, "only workspace owners and admins can set budgets")
    );
    let r = call(
        &app,
        "PUT",
        &one,
        &bob.token,
        &ws,
        Some(json!({"limit_usd": 1000})),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = call(&app, "DELETE", &one, &bob.token, &ws, None).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        call(&app, "GET", "/api/budgets", &bob.token, &ws, None)
            .await
            .status,
        200
    );
    // another workspace's budget does not exist for its owner
    let r = call(
        &app,
        "PUT",
        &one,
        &mallory.token,
        &mws,
        Some(json!({"limit_usd": 1000})),
    )
    .await;
    assert_eq!((r.status, r.error()), (404, "budget not found"));
    let r = call(&app, "DELETE", &one, &mallory.token, &mws, None).await;
    assert_eq!(r.status, 404);
    // workspace settings: managers only, known zones only, known fields only
    let settings = format!("/api/workspaces/{ws}");
    for (token, body, status, message) in [
        (
            &bob.token,
            json!({"timezone": "UTC"}),
            403,
            "only workspace owners and admins can change its settings",
        ),
        (
            &alice.token,
            json!({"timezone": "Mars/Olympus"}),
            400,
            "unknown time zone \"Mars/Olympus\"",
        ),
        (
            &alice.token,
            json!({"timezone": 5}),
            400,
            "timezone must be a string",
        ),
        (
            &alice.token,
            json!({"settings": {}}),
            400,
            "settings is not a workspace setting (name, description, timezone, max_concurrent_tasks)",
        ),
        (&alice.token, json!({"name": " "}), 400, "name is required"),
        (
            &alice.token,
            json!({"max_concurrent_tasks": 0}),
            400,
            "max_concurrent_tasks must be a whole number from 1 to 10000, or null for no limit",
        ),
        (
            &bob.token,
            json!({"max_concurrent_tasks": 5}),
            403,
            "only workspace owners and admins can change its settings",
        ),
    ] {
        let r = app
            .request("PATCH", &settings, Some(token), Some(&body.to_string()))
            .await;
        assert_eq!((r.status, r.error()), (status, message), "{body}");
    }
    assert_eq!(before, app.dump());
}
