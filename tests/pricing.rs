//! Prices on the server: the built-in table, a workspace's overrides, and
//! what a task's usage cost — expectations computed by hand.

mod common;

use agenthub::domain::{Role, TaskId, WorkspaceId};
use agenthub::store::usage::{upsert_task_usage_with_cost, UsageEntry};
use common::{spawn_app, TestApp};
use serde_json::{json, Value};

/// Usage of `task` for (provider, model), first recorded at `at`, with
/// the provider's own cost when it reported one.
fn record(
    app: &TestApp,
    (task, ws): (&str, &str),
    (provider, model): (&str, &str),
    tokens: [i64; 4],
    cost: Option<i64>,
    at: &str,
) {
    let (task, ws): (TaskId, WorkspaceId) = (task.parse().unwrap(), ws.parse().unwrap());
    let entry = UsageEntry {
        provider: provider.into(),
        model: model.into(),
        input_tokens: tokens[0],
        output_tokens: tokens[1],
        cache_read_tokens: tokens[2],
        cache_write_tokens: tokens[3],
    };
    let at = at.parse().unwrap();
    app.db
        .write_blocking(move |tx| upsert_task_usage_with_cost(tx, task, ws, &entry, cost, at))
        .unwrap();
}

fn price(provider: &str, model: &str, from: &str, prices: [f64; 4]) -> Value {
    json!({"provider": provider, "model": model, "effective_from": from,
           "input_usd_per_mtok": prices[0], "output_usd_per_mtok": prices[1],
           "cache_read_usd_per_mtok": prices[2], "cache_write_usd_per_mtok": prices[3]})
}

/// `PUT /api/pricing/overrides` in `ws` as `token`.
async fn set_price(app: &TestApp, ws: &str, token: &str, body: Value) -> common::Reply {
    app.put(
        &format!("/api/pricing/overrides?workspace_id={ws}"),
        token,
        body,
    )
    .await
}

/// The rows of `/api/pricing` for (provider, model).
fn rows_of<'a>(list: &'a Value, provider: &str, model: &str) -> Vec<&'a Value> {
    list.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["provider"] == provider && r["model"] == model)
        .collect()
}

#[actix_web::test]
async fn the_builtin_table_is_listed_with_the_workspaces_overrides() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let r = app
        .get(&format!("/api/pricing?workspace_id={ws}"), &bob.token)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for vendor in [
        "anthropic",
        "openai",
        "google",
        "deepseek",
        "xai",
        "moonshot",
        "zhipu",
    ] {
        assert!(
            r.body
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["provider"] == vendor),
            "{vendor}"
        );
    }
    assert_eq!(
        rows_of(&r.body, "anthropic", "claude-sonnet-4-5"),
        [
            &json!({"provider": "anthropic", "model": "claude-sonnet-4-5",
                 "input_usd_per_mtok": 3.0, "output_usd_per_mtok": 15.0,
                 "cache_read_usd_per_mtok": 0.3, "cache_write_usd_per_mtok": 3.75,
                 "effective_from": "2025-09-29", "source": "builtin"})
        ]
    );
    // a dated price change is two rows
    let o3: Vec<_> = rows_of(&r.body, "openai", "o3")
        .iter()
        .map(|p| (p["effective_from"].clone(), p["input_usd_per_mtok"].clone()))
        .collect();
    assert_eq!(
        o3,
        [
            (json!("2025-04-16"), json!(10.0)),
            (json!("2025-06-10"), json!(2.0))
        ]
    );

    // an override is stored under the names usage is priced under
    let r = set_price(
        &app,
        &ws,
        &alice.token,
        price(
            "claude",
            "claude-sonnet-4-5-20250929",
            "2026-01-01",
            [2.5, 12.0, 0.25, 3.0],
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["provider"], "anthropic");
    assert_eq!(r.body["model"], "claude-sonnet-4-5");
    assert_eq!(r.body["source"], "override");
    // the same key again: new prices, 200
    let r = set_price(
        &app,
        &ws,
        &alice.token,
        price(
            "anthropic",
            "claude-sonnet-4-5",
            "2026-01-01",
            [2.0, 12.0, 0.25, 3.0],
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .get(&format!("/api/pricing?workspace_id={ws}"), &bob.token)
        .await;
    let sonnet: Vec<_> = rows_of(&r.body, "anthropic", "claude-sonnet-4-5")
        .iter()
        .map(|p| (p["source"].clone(), p["input_usd_per_mtok"].clone()))
        .collect();
    assert_eq!(
        sonnet,
        [
            (json!("builtin"), json!(3.0)),
            (json!("override"), json!(2.0))
        ]
    );

    // another workspace sees none of it
    let (erin, ws2) = app.init_user("erin@example.com");
    let r = app
        .get(&format!("/api/pricing?workspace_id={ws2}"), &erin.token)
        .await;
    assert_eq!(rows_of(&r.body, "anthropic", "claude-sonnet-4-5").len(), 1);
    let r = app
        .get(&format!("/api/pricing?workspace_id={ws}"), &erin.token)
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
}

#[actix_web::test]
async fn only_owners_and_admins_set_prices_and_bad_input_changes_nothing() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let admin = app.add_user("adam@example.com", Some((&ws, Role::Admin)));
    let path = format!("/api/pricing/overrides?workspace_id={ws}");
    let good = price("openai", "gpt-5", "2026-02-01", [1.0, 8.0, 0.1, 1.0]);
    let before = app.dump();
    let r = app.put(&path, &bob.token, good.clone()).await;
    assert_eq!(
        (r.status, r.error()),
        (403, "only workspace owners and admins can set prices")
    );
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let range =
        "must be a number of USD per million tokens from 0 to 100000 with at most 6 decimals";
    for (body, error) in [
        (
            with("input_usd_per_mtok", json!(-1)),
            format!("input_usd_per_mtok {range}"),
        ),
        (
            with("output_usd_per_mtok", json!("8")),
            format!("output_usd_per_mtok {range}"),
        ),
        (
            with("cache_read_usd_per_mtok", json!(0.0000001)),
            format!("cache_read_usd_per_mtok {range}"),
        ),
        (
            with("cache_write_usd_per_mtok", json!(1e9)),
            format!("cache_write_usd_per_mtok {range}"),
        ),
        (
            without("cache_write_usd_per_mtok"),
            "cache_write_usd_per_mtok is required".into(),
        ),
        (
            with("effective_from", json!("2026-02-30")),
            "effective_from must be a calendar date (YYYY-MM-DD)".into(),
        ),
        (
            with("effective_from", json!("2026-2-1")),
            "effective_from must be a calendar date (YYYY-MM-DD)".into(),
        ),
        (
            without("effective_from"),
            "effective_from is required".into(),
        ),
        (
            with("input_usd_per_mtok", json!(3.0000004)),
            format!("input_usd_per_mtok {range}"),
        ),
        (
            with("effective_from", json!("+12026-01-01")),
            "effective_from must be a calendar date (YYYY-MM-DD)".into(),
        ),
        (with("model", json!(" ")), "model is required".into()),
        (
            with("model", json!("anthropic/")),
            "model \"anthropic/\" names no model once made canonical".into(),
        ),
        (
            with("provider", json!("p".repeat(256))),
            "provider is too long (at most 255 bytes)".into(),
        ),
        (
            with("source", json!("builtin")),
            "source is not set by a request: an override is always \"override\"".into(),
        ),
    ] {
        let r = app.put(&path, &admin.token, body.clone()).await;
        assert_eq!((r.status, r.error()), (400, error.as_str()), "{body}");
    }
    assert_eq!(app.dump(), before);
    assert_eq!(app.put(&path, &admin.token, good).await.status, 201);

    // deleting names the key the same way; a missing one is 404
    let delete = |q: &str| format!("/api/pricing/overrides?workspace_id={ws}&{q}");
    let key = "provider=codex&model=gpt-5-2025-08-07&effective_from=2026-02-01";
    let r = app.delete(&delete(key), &bob.token).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = app.delete(&delete(key), &alice.token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app.delete(&delete(key), &alice.token).await;
    assert_eq!((r.status, r.error()), (404, "price override not found"));
    let r = app
        .delete(&delete("provider=openai&model=gpt-5"), &alice.token)
        .await;
    assert_eq!((r.status, r.error()), (400, "effective_from is required"));
}

#[actix_web::test]
async fn a_workspace_holds_a_bounded_number_of_overrides() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let path = format!("/api/pricing/overrides?workspace_id={ws}");
    let (workspace, user): (WorkspaceId, agenthub::domain::UserId) =
        (ws.parse().unwrap(), alice.id.parse().unwrap());
    app.db
        .write_blocking(move |tx| {
            for i in 0..1000 {
                let row = agenthub::pricing::PriceRow {
                    provider: "local".into(),
                    model: format!("m{i}"),
                    price: agenthub::pricing::Price {
                        input: 1,
                        output: 1,
                        cache_read: 1,
                        cache_write: 1,
                    },
                    effective_from: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                    source: agenthub::pricing::PriceSource::Override,
                };
                agenthub::store::pricing::put(
                    tx,
                    workspace,
                    &row,
                    user,
                    agenthub::domain::Timestamp::now(),
                )?;
            }
            Ok::<_, agenthub::store::Error>(())
        })
        .unwrap();
    let r = app
        .put(
            &path,
            &alice.token,
            price("local", "m1000", "2026-01-01", [1.0; 4]),
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (409, "a workspace holds at most 1000 price overrides")
    );
    // changing one of them is still allowed
    let r = app
        .put(
            &path,
            &alice.token,
            price("local", "m7", "2026-01-01", [2.0; 4]),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .get(&format!("/api/pricing?workspace_id={ws}"), &alice.token)
        .await;
    assert_eq!(
        rows_of(&r.body, "local", "m7")[0]["input_usd_per_mtok"],
        2.0
    );
}

/// `(model, cost_usd, uncosted_tokens, cost_source)` of each row.
fn costs(usage: &Value) -> Vec<(String, f64, i64, String)> {
    usage
        .as_array()
        .unwrap_or_else(|| panic!("{usage}"))
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap().to_string(),
                r["cost_usd"].as_f64().unwrap(),
                r["uncosted_tokens"].as_i64().unwrap(),
                r["cost_source"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[actix_web::test]
async fn a_tasks_usage_is_priced_on_its_day_and_a_reported_cost_wins() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app
        .agent(&alice.token, &ws, &rt, json!({"max_concurrent_tasks": 5}))
        .await;
    let before = app.task(&alice.token, &agent, "before", 0).await;
    let after = app.task(&alice.token, &agent, "after", 0).await;
    // 2M input, 1M output, 10M cache read, 400k cache write of Sonnet 4.5
    let sonnet = [2_000_000, 1_000_000, 10_000_000, 400_000];
    record(
        &app,
        (&before, &ws),
        ("claude", "claude-sonnet-4-5-20250929"),
        sonnet,
        None,
        "2026-02-28T23:59:59.000Z",
    );
    record(
        &app,
        (&after, &ws),
        ("claude", "claude-sonnet-4-5-20250929"),
        sonnet,
        None,
        "2026-03-01T00:00:00.000Z",
    );
    // the provider said what this one cost: $1.2345
    record(
        &app,
        (&after, &ws),
        ("codex", "gpt-5-codex"),
        [1_000_000, 0, 0, 0],
        Some(12_345_000_000),
        "2026-03-01T00:00:00.000Z",
    );
    // a model nobody priced
    record(
        &app,
        (&after, &ws),
        ("ollama", "llama3:70b"),
        [100, 20, 3, 0],
        None,
        "2026-03-01T00:00:00.000Z",
    );

    // an override from March 1st: $2 / $10 / $0.20 / $2.50
    let r = set_price(
        &app,
        &ws,
        &alice.token,
        price(
            "anthropic",
            "claude-sonnet-4-5",
            "2026-03-01",
            [2.0, 10.0, 0.2, 2.5],
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    let usage = |task: &str| {
        let (app, token, path) = (
            &app,
            alice.token.clone(),
            format!("/api/tasks/{task}/usage"),
        );
        async move {
            let r = app.get(&path, &token).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            r.body
        }
    };
    // February keeps the built-in price: 2 × $3 + 1 × $15 + 10 × $0.30 + 0.4 × $3.75
    let feb = usage(&before).await;
    assert_eq!(
        costs(&feb),
        [(
            "claude-sonnet-4-5-20250929".into(),
            25.5,
            0,
            "estimated".into()
        )]
    );
    assert_eq!(
        feb[0]["priced_as"],
        json!({"provider": "anthropic", "model": "claude-sonnet-4-5",
               "effective_from": "2025-09-29", "source": "builtin"})
    );
    assert_eq!(feb[0]["input_tokens"], 2_000_000);
    // March is the override's: 2 × $2 + 1 × $10 + 10 × $0.20 + 0.4 × $2.50
    let march = usage(&after).await;
    assert_eq!(
        costs(&march),
        [
            (
                "claude-sonnet-4-5-20250929".into(),
                17.0,
                0,
                "estimated".into()
            ),
            ("gpt-5-codex".into(), 1.2345, 0, "reported".into()),
            ("llama3:70b".into(), 0.0, 123, "unpriced".into()),
        ]
    );
    assert_eq!(march[0]["priced_as"]["source"], "override");
    assert_eq!(march[1]["priced_as"], Value::Null);

    // deleting the override brings the built-in price back for March
    let r = app
        .delete(
            &format!("/api/pricing/overrides?workspace_id={ws}&provider=anthropic&model=claude-sonnet-4-5&effective_from=2026-03-01"),
            &alice.token,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(costs(&usage(&after).await)[0].1, 25.5);
}

#[actix_web::test]
async fn a_private_agents_task_usage_is_for_those_who_may_read_it() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app
        .agent(&alice.token, &ws, &rt, json!({"visibility": "private"}))
        .await;
    let task = app.task(&alice.token, &agent, "secret", 0).await;
    record(
        &app,
        (&task, &ws),
        ("claude", "claude-opus-4-5"),
        [1_000_000, 0, 0, 0],
        None,
        "2026-03-01T00:00:00.000Z",
    );
    let path = format!("/api/tasks/{task}/usage");
    let r = app.get(&path, &bob.token).await;
    assert_eq!((r.status, r.error()), (404, "task not found"));
    let (mallory, _) = app.init_user("mallory@example.com");
    let r = app.get(&path, &mallory.token).await;
    assert_eq!((r.status, r.error()), (404, "task not found"));
    let r = app.get(&path, &alice.token).await;
    assert_eq!(
        costs(&r.body),
        [("claude-opus-4-5".into(), 5.0, 0, "estimated".into())]
    );
}
