//! Fallback runtimes (issue: whose machine is it, item 4): an agent names
//! runtimes that take its queued tasks while its own runtime has been
//! offline for `fallback_after_secs`, or for `fallback_after_secs` after a
//! task failed there for a quota or rate limit; never one its owner may
//! not bind agents to, checked again on every claim.

mod common;

use agenthub::domain::Role;
use common::{batch, spawn_app, TestApp};
use serde_json::{json, Value};

/// The task a claim of `runtime` dispatched, if any.
async fn claimed(app: &TestApp, token: &str, runtime: &str) -> Option<String> {
    let r = app.claim(token, runtime).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    if r.body["task"]["id"].is_string() {
        assert_eq!(
            r.body["task"]["runtime_id"], runtime,
            "the task records who ran it"
        );
    }
    r.body["task"]["id"].as_str().map(str::to_string)
}

/// Ten minutes ago, as both engines read a time literal.
fn long_ago() -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(10))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

async fn edit(app: &TestApp, token: &str, agent: &str, body: Value) -> common::Reply {
    app.request(
        "PUT",
        &format!("/api/agents/{agent}"),
        Some(token),
        Some(&body.to_string()),
    )
    .await
}

async fn run_and_fail(app: &TestApp, token: &str, task: &str, reason: &str) {
    let r = app
        .post(&format!("/api/daemon/tasks/{task}/start"), token, json!({}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .post(
            &format!("/api/daemon/tasks/{task}/fail"),
            token,
            json!({"error": "out of credits", "failure_reason": reason}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[actix_web::test]
async fn a_fallback_takes_the_work_while_the_agents_runtime_is_offline_or_out_of_quota() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let primary = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let backup = app.runtime(&alice.token, &ws, "box", "claude").await;
    let agent = app
        .agent(
            &alice.token,
            &ws,
            &primary,
            json!({"fallback_runtime_ids": [backup], "fallback_after_secs": 60}),
        )
        .await;
    let shown = app.get(&format!("/api/agents/{agent}"), &alice.token).await;
    assert_eq!(shown.body["fallback_runtime_ids"], json!([backup]));
    assert_eq!(shown.body["fallback_after_secs"], 60);

    // its own runtime online: the fallback waits
    let t1 = app.task(&alice.token, &agent, "one", 0).await;
    assert_eq!(claimed(&app, &alice.token, &backup).await, None);
    // offline, but not for long enough yet
    app.deregister(&alice.token, &[&primary]).await;
    assert_eq!(claimed(&app, &alice.token, &backup).await, None);
    // offline for longer than fallback_after_secs
    batch(
        &app.database,
        &format!(
            "UPDATE agent_runtime SET offline_since = '{}' WHERE id = '{primary}'",
            long_ago()
        ),
    );
    assert_eq!(claimed(&app, &alice.token, &backup).await, Some(t1.clone()));
    assert_eq!(
        app.task_row(&t1).runtime_id.map(|r| r.to_string()),
        Some(backup.clone())
    );

    // back online, its own runtime takes the work again
    let r = app
        .post(
            "/api/daemon/heartbeat",
            &alice.token,
            json!({"runtime_id": primary}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let t2 = app.task(&alice.token, &agent, "two", 0).await;
    assert_eq!(claimed(&app, &alice.token, &backup).await, None);
    assert_eq!(
        claimed(&app, &alice.token, &primary).await,
        Some(t2.clone())
    );

    // a quota failure there opens the fallback for fallback_after_secs
    run_and_fail(&app, &alice.token, &t2, "agent_error.provider_quota_limit").await;
    let shown = app.get(&format!("/api/agents/{agent}"), &alice.token).await;
    assert!(
        shown.body["quota_failed_at"].is_string(),
        "{:?}",
        shown.body
    );
    let t3 = app.task(&alice.token, &agent, "three", 0).await;
    assert_eq!(claimed(&app, &alice.token, &backup).await, Some(t3.clone()));
    // a failure on the fallback says nothing about the agent's own runtime
    let before = long_ago();
    batch(
        &app.database,
        &format!("UPDATE agent SET quota_failed_at = '{before}' WHERE id = '{agent}'"),
    );
    let quota_failed_at = app
        .get(&format!("/api/agents/{agent}"), &alice.token)
        .await
        .body["quota_failed_at"]
        .clone();
    run_and_fail(
        &app,
        &alice.token,
        &t3,
        "agent_error.provider_capacity_or_rate_limit",
    )
    .await;
    let shown = app.get(&format!("/api/agents/{agent}"), &alice.token).await;
    assert_eq!(shown.body["quota_failed_at"], quota_failed_at);
    // and once fallback_after_secs have passed, the work goes home
    let t4 = app.task(&alice.token, &agent, "four", 0).await;
    assert_eq!(claimed(&app, &alice.token, &backup).await, None);
    assert_eq!(
        claimed(&app, &alice.token, &primary).await,
        Some(t4.clone())
    );
    // another failure code opens nothing
    run_and_fail(&app, &alice.token, &t4, "agent_error.process_failure").await;
    let t5 = app.task(&alice.token, &agent, "five", 0).await;
    assert_eq!(claimed(&app, &alice.token, &backup).await, None);
    assert_eq!(claimed(&app, &alice.token, &primary).await, Some(t5));

    // moving the agent onto its fallback takes it off the list
    let r = edit(&app, &alice.token, &agent, json!({ "runtime_id": backup })).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["fallback_runtime_ids"], json!([]));
}

#[actix_web::test]
async fn a_fallback_is_never_a_machine_its_owner_has_not_made_available() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let carol = app.add_user("carol@example.com", Some((&ws, Role::Member)));
    let (mallory, mws) = app.init_user("mallory@example.com");
    let primary = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let backup = app.runtime(&alice.token, &ws, "box", "claude").await;
    let bobs = app.runtime(&bob.token, &ws, "bob-box", "claude").await;
    let elsewhere = app.runtime(&mallory.token, &mws, "far", "claude").await;
    let agent = app.agent(&alice.token, &ws, &primary, json!({})).await;

    // what a list must be
    let before = app.dump();
    let six: Vec<String> = (0..6)
        .map(|i| format!("00000000-0000-7000-8000-{i:012}"))
        .collect();
    for (body, error) in [
        (
            json!({"fallback_runtime_ids": backup}),
            "fallback_runtime_ids must be a list of runtime ids",
        ),
        (
            json!({"fallback_runtime_ids": [primary]}),
            "fallback_runtime_ids must not name the agent's own runtime",
        ),
        (
            json!({"fallback_runtime_ids": [backup, backup]}),
            "fallback_runtime_ids names a runtime twice",
        ),
        (
            json!({ "fallback_runtime_ids": six }),
            "fallback_runtime_ids lists at most 5 runtimes",
        ),
        (
            json!({"fallback_runtime_ids": ["nope"]}),
            "fallback_runtime_ids holds an invalid runtime id",
        ),
        (
            json!({"fallback_runtime_ids": [elsewhere]}),
            "fallback_runtime_ids holds an invalid runtime id",
        ),
        (
            json!({"fallback_after_secs": 10}),
            "fallback_after_secs must be between 30 and 86400",
        ),
    ] {
        let r = edit(&app, &alice.token, &agent, body.clone()).await;
        assert_eq!((r.status, r.error()), (400, error), "{body}");
    }
    // bob's private machine: not even a workspace owner names it
    let r = edit(
        &app,
        &alice.token,
        &agent,
        json!({"fallback_runtime_ids": [bobs]}),
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (
            403,
            "this runtime is private to its owner: only they can bind agents to it"
        )
    );
    assert_eq!(before, app.dump(), "a refusal changed the database");

    // shared, a manager's agent may fall back to it
    app.share_runtime(&bob.token, &bobs).await;
    let r = edit(
        &app,
        &alice.token,
        &agent,
        json!({"fallback_runtime_ids": [backup, bobs], "fallback_after_secs": 30}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["fallback_runtime_ids"], json!([backup, bobs]));
    app.deregister(&alice.token, &[&primary]).await;
    batch(
        &app.database,
        &format!(
            "UPDATE agent_runtime SET offline_since = '{}' WHERE id = '{primary}'",
            long_ago()
        ),
    );
    let t1 = app.task(&alice.token, &agent, "one", 0).await;
    assert_eq!(claimed(&app, &bob.token, &bobs).await, Some(t1));
    // once bob makes it private again, it takes none of alice's work
    let r = app
        .patch(
            &format!("/api/runtimes/{bobs}"),
            &bob.token,
            json!({"visibility": "private"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let t2 = app.task(&alice.token, &agent, "two", 0).await;
    assert_eq!(claimed(&app, &bob.token, &bobs).await, None);
    assert_eq!(claimed(&app, &alice.token, &backup).await, Some(t2));

    // a member's agent: the member names only what they may bind, and a
    // manager may not name for them what they may not
    app.share_runtime(&bob.token, &bobs).await;
    let carols_rt = app.runtime(&carol.token, &ws, "carol-mbp", "claude").await;
    let carols = app.agent(&carol.token, &ws, &carols_rt, json!({})).await;
    let r = edit(
        &app,
        &carol.token,
        &carols,
        json!({"fallback_runtime_ids": [bobs]}),
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (
            403,
            "only the runtime's owner or a workspace owner or admin can bind agents to it"
        )
    );
    let r = edit(
        &app,
        &alice.token,
        &carols,
        json!({"fallback_runtime_ids": [bobs]}),
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (
            403,
            format!("fallback runtime {bobs} is not one the agent's owner may bind agents to")
                .as_str()
        )
    );
    let r = app
        .create_agent(
            &carol.token,
            &ws,
            &carols_rt,
            json!({"name": "second", "fallback_runtime_ids": [bobs]}),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
}
