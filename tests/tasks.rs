//! The task queue: claim, transitions, limits, activity (SPEC §5).

mod common;

use std::collections::{HashMap, HashSet};

use agenthub::domain::Role;
use agenthub::store::seed::{self, TaskClock};
use common::{parse_id, spawn_app, TestApp};
use serde_json::json;

#[actix_web::test]
async fn claim_hands_out_the_highest_priority_oldest_task_with_its_agent() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let other_rt = app.runtime(&alice.token, &ws, "mbp", "codex").await;
    let agent = app
        .agent(
            &alice.token,
            &ws,
            &rt,
            json!({"name": "fixer", "instructions": "small diffs"}),
        )
        .await;
    let elsewhere = app.agent(&alice.token, &ws, &other_rt, json!({})).await;
    app.task(&alice.token, &elsewhere, "not for this runtime", 100)
        .await;
    let low = app.task(&alice.token, &agent, "low", 0).await;
    let high_old = app.task(&alice.token, &agent, "high old", 5).await;
    let high_new = app.task(&alice.token, &agent, "high new", 5).await;

    let r = app.claim(&alice.token, &rt).await;
    assert_eq!(r.status, 200);
    let task = &r.body["task"];
    assert_eq!(task["id"], high_old.as_str());
    assert_eq!(task["prompt"], "high old");
    assert_eq!(task["status"], "dispatched");
    assert_eq!(task["runtime_id"], rt.as_str());
    assert!(task["dispatched_at"].is_string());
    assert_eq!(
        task["agent"],
        json!({"id": agent, "name": "fixer", "instructions": "small diffs"})
    );

    let pending = app
        .get(
            &format!("/api/daemon/runtimes/{rt}/tasks/pending"),
            &alice.token,
        )
        .await;
    let ids: Vec<&str> = pending
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [high_old.as_str(), high_new.as_str(), low.as_str()]);

    assert_eq!(
        app.claim(&alice.token, &rt).await.body["task"]["id"],
        high_new.as_str()
    );
    assert_eq!(
        app.claim(&alice.token, &rt).await.body["task"]["id"],
        low.as_str()
    );
    let r = app.claim(&alice.token, &rt).await;
    assert_eq!(r.body, json!({"task": null}));
}

#[actix_web::test]
async fn task_lifecycle_follows_the_legal_transitions() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let daemon = app.daemon_token(&alice.token, &ws, "mbp").await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let task = app.task(&alice.token, &agent, "do it", 0).await;
    let post = |what: &str, body: serde_json::Value| {
        let path = format!("/api/daemon/tasks/{task}/{what}");
        let app = &app;
        let daemon = daemon.clone();
        async move { app.post(&path, &daemon, body).await }
    };

    let r = post("start", json!({})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "cannot start task: it is queued");
    assert_eq!(
        post("complete", json!({})).await.error(),
        "cannot complete task: it is queued"
    );
    assert_eq!(app.agent_status(&agent), "idle");

    app.claim(&daemon, &rt).await;
    assert_eq!(app.agent_status(&agent), "working");
    let r = post("complete", json!({})).await;
    assert_eq!(r.error(), "cannot complete task: it is dispatched");
    let r = post("start", json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "running");
    assert!(r.body["started_at"].is_string());
    let status = app
        .get(&format!("/api/daemon/tasks/{task}/status"), &daemon)
        .await;
    assert_eq!(status.body, json!({"id": task, "status": "running"}));
    assert_eq!(
        post("progress", json!({"summary": "halfway"})).await.status,
        200
    );
    assert_eq!(
        post(
            "messages",
            json!({"messages": [{"seq": 1, "type": "text", "content": "hi"}]})
        )
        .await
        .status,
        200
    );

    let r = post(
        "complete",
        json!({"output": "done", "pr_url": "https://example.com/pr/1"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "completed");
    assert_eq!(r.body["result"]["pr_url"], "https://example.com/pr/1");
    assert!(r.body["completed_at"].is_string());
    assert_eq!(app.agent_status(&agent), "idle");

    let done = r.body.clone();
    for verb in ["start", "fail"] {
        let r = post(verb, json!({})).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.error(), format!("cannot {verb} task: it is completed"));
    }
    // a complete sent again after a lost reply: 200, the task as it was
    let before = app.dump();
    let r = post("complete", json!({"pr_url": "https://example.com/pr/2"})).await;
    assert_eq!((r.status, &r.body), (200, &done));
    assert_eq!(before, app.dump());
    // a daemon's last flush may arrive just after its complete
    assert_eq!(post("progress", json!({})).await.status, 200);
    let r = app
        .post(
            &format!("/api/tasks/{task}/cancel"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "cannot cancel task: it is completed");
    let r = app
        .request(
            "POST",
            &format!("/api/daemon/tasks/{task}/complete"),
            Some(&daemon),
            Some("{oops"),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[actix_web::test]
async fn fail_records_the_error_from_dispatched_or_running() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let a = app.task(&alice.token, &agent, "a", 1).await;
    let b = app.task(&alice.token, &agent, "b", 0).await;
    app.claim(&alice.token, &rt).await;
    app.claim(&alice.token, &rt).await;
    app.post(
        &format!("/api/daemon/tasks/{b}/start"),
        &alice.token,
        json!({}),
    )
    .await;
    let r = app
        .post(
            &format!("/api/daemon/tasks/{a}/fail"),
            &alice.token,
            json!({"error": "no git"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["error"], "no git");
    assert_eq!(app.agent_status(&agent), "working");
    let r = app
        .request(
            "POST",
            &format!("/api/daemon/tasks/{b}/fail"),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "failed");
    assert_eq!(r.body["error"], "task failed");
    assert_eq!(r.body["failure_reason"], "agent_error");
    assert_eq!(app.agent_status(&agent), "idle");
}

#[actix_web::test]
async fn every_failed_or_cancelled_task_says_why_with_a_code() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app
        .agent(&alice.token, &ws, &rt, json!({"max_concurrent_tasks": 4}))
        .await;
    let quota = app.task(&alice.token, &agent, "quota", 0).await;
    let plain = app.task(&alice.token, &agent, "plain", 0).await;
    let bad = app.task(&alice.token, &agent, "bad", 0).await;
    for _ in 0..3 {
        app.claim(&alice.token, &rt).await;
    }
    let fail = |task: &str, body: serde_json::Value| {
        let path = format!("/api/daemon/tasks/{task}/fail");
        let token = alice.token.clone();
        let app = &app;
        async move { app.post(&path, &token, body).await }
    };
    let r = fail(
        &quota,
        json!({"error": "429 from the provider", "failure_reason": "agent_error.provider_quota_limit"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["failure_reason"], "agent_error.provider_quota_limit");
    assert_eq!(r.body["error"], "429 from the provider");
    let r = fail(&plain, json!({"error": "exit 1"})).await;
    assert_eq!(r.body["failure_reason"], "agent_error");

    let before = app.dump();
    for reason in [
        "Quota!",
        "agent error",
        "agent_error.",
        ".x",
        &"a".repeat(129),
    ] {
        let r = fail(&bad, json!({"failure_reason": reason})).await;
        assert_eq!(r.status, 400, "{reason}");
        assert_eq!(
            r.error(),
            "failure_reason must be lower-case words joined by _ and . (at most 128 bytes)"
        );
    }
    assert_eq!(before, app.dump());
    assert_eq!(app.task_status(&bad), "dispatched");

    // a fail sent again after a lost reply keeps the first outcome
    let r = fail(
        &quota,
        json!({"error": "again", "failure_reason": "agent_error.unknown"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["failure_reason"], "agent_error.provider_quota_limit");
    assert_eq!(r.body["error"], "429 from the provider");
    // a start sent again is answered with the task as it is too
    let started = app
        .post(
            &format!("/api/daemon/tasks/{bad}/start"),
            &alice.token,
            json!({}),
        )
        .await;
    let again = app
        .post(
            &format!("/api/daemon/tasks/{bad}/start"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!((again.status, &again.body), (200, &started.body));

    let r = app
        .post(&format!("/api/tasks/{bad}/cancel"), &alice.token, json!({}))
        .await;
    assert_eq!(r.body["failure_reason"], "cancelled_by_user");
    let queued = app.task(&alice.token, &agent, "never run", 0).await;
    let r = app
        .post(
            &format!("/api/agents/{agent}/archive"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        app.task_row(&queued).failure_reason.as_deref(),
        Some("agent_archived")
    );
}

#[actix_web::test]
async fn claims_respect_max_concurrent_tasks() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app
        .agent(&alice.token, &ws, &rt, json!({"max_concurrent_tasks": 2}))
        .await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        tasks.push(app.task(&alice.token, &agent, &format!("t{i}"), 0).await);
    }
    let first = app.claim(&alice.token, &rt).await.body["task"]["id"].clone();
    app.claim(&alice.token, &rt).await;
    assert_eq!(
        app.claim(&alice.token, &rt).await.body,
        json!({"task": null})
    );
    let first = first.as_str().unwrap();
    app.post(
        &format!("/api/daemon/tasks/{first}/start"),
        &alice.token,
        json!({}),
    )
    .await;
    assert_eq!(
        app.claim(&alice.token, &rt).await.body,
        json!({"task": null})
    );
    app.post(
        &format!("/api/daemon/tasks/{first}/complete"),
        &alice.token,
        json!({}),
    )
    .await;
    assert_eq!(
        app.claim(&alice.token, &rt).await.body["task"]["id"],
        tasks[2].as_str()
    );
}

#[actix_web::test]
async fn thirty_concurrent_claims_never_share_a_task_or_overrun_a_limit() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let mut limits = HashMap::new();
    for i in 0..6 {
        let limit = 1 + i % 3; // 1, 2, 3, 1, 2, 3 → 12 slots
        let agent = app
            .agent(
                &alice.token,
                &ws,
                &rt,
                json!({"max_concurrent_tasks": limit}),
            )
            .await;
        for t in 0..5 {
            app.task(&alice.token, &agent, &format!("{i}-{t}"), t).await;
        }
        limits.insert(agent, limit);
    }
    let replies =
        futures_util::future::join_all((0..30).map(|_| app.claim(&alice.token, &rt))).await;
    let claimed = replies.into_iter().filter_map(|r| {
        assert_eq!(r.status, 200, "{:?}", r.body);
        Some(r.body["task"].clone()).filter(|t| !t.is_null())
    });
    assert_twelve_fair_claims(&app, claimed, &limits);
}

/// The tasks concurrent claims handed out over 12 free slots: each task
/// once, no agent past its limit, every slot used, as the rows say too.
fn assert_twelve_fair_claims(
    app: &TestApp,
    claimed: impl Iterator<Item = serde_json::Value>,
    limits: &HashMap<String, i64>,
) {
    let mut seen = HashSet::new();
    let mut per_agent: HashMap<String, i64> = HashMap::new();
    for task in claimed {
        let id = task["id"].as_str().unwrap().to_string();
        assert!(seen.insert(id.clone()), "task {id} handed out twice");
        *per_agent
            .entry(task["agent_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 12);
    for (agent, n) in per_agent {
        assert!(n <= limits[&agent], "agent {agent} got {n} over its limit");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM agent_task_queue WHERE status = 'dispatched'"),
        12
    );
}

#[actix_web::test]
async fn user_cancels_a_queued_task_within_their_workspace_only() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let (mallory, _) = app.init_user("mallory@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let task = app.task(&alice.token, &agent, "x", 0).await;
    let r = app
        .post(
            &format!("/api/tasks/{task}/cancel"),
            &mallory.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "task not found");
    let r = app
        .post(
            &format!("/api/tasks/{task}/cancel"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(app.task_status(&task), "cancelled");
}

#[actix_web::test]
async fn a_member_cancels_only_tasks_they_queued() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let carol = app.add_user("carol@example.com", Some((&ws, Role::Member)));
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let private = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let shared = app
        .agent(&alice.token, &ws, &rt, json!({"visibility": "workspace"}))
        .await;
    let hidden = app.task(&alice.token, &private, "private work", 0).await;
    let alices = app.task(&alice.token, &shared, "alice's", 0).await;
    let bobs = app.task(&bob.token, &shared, "bob's", 0).await;
    assert_eq!(
        app.get(&format!("/api/agents/{shared}/tasks"), &bob.token)
            .await
            .body[0]["created_by"],
        bob.id.as_str()
    );
    let cancel = |task: String, token: String| {
        let app = &app;
        async move {
            app.post(&format!("/api/tasks/{task}/cancel"), &token, json!({}))
                .await
        }
    };
    // a private agent's task is not there for bob
    let r = cancel(hidden.clone(), bob.token.clone()).await;
    assert_eq!((r.status, r.error()), (404, "task not found"));
    // someone else's task on a shared agent is refused
    let r = cancel(alices.clone(), bob.token.clone()).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = cancel(bobs.clone(), carol.token.clone()).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(app.task_status(&alices), "queued");
    // their own is theirs to cancel
    let r = cancel(bobs.clone(), bob.token.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // and the runtime's owner may stop work on their machine
    let r = cancel(alices.clone(), alice.token.clone()).await;
    assert_eq!(r.status, 200);
}

#[actix_web::test]
async fn other_workspaces_daemons_cannot_claim_or_touch_tasks() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let (bob, bws) = app.init_user("bob@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let task = app.task(&alice.token, &agent, "x", 0).await;
    let foreign = app.daemon_token(&bob.token, &bws, "bmbp").await;

    let r = app.claim(&foreign, &rt).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "runtime not found");
    let r = app
        .get(
            &format!("/api/daemon/runtimes/{rt}/tasks/pending"),
            &foreign,
        )
        .await;
    assert_eq!(r.status, 404);
    app.claim(&alice.token, &rt).await;
    for what in ["start", "fail", "complete", "progress", "messages"] {
        let r = app
            .post(
                &format!("/api/daemon/tasks/{task}/{what}"),
                &foreign,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 404, "{what}");
        assert_eq!(r.error(), "task not found");
    }
    let r = app
        .get(&format!("/api/daemon/tasks/{task}/status"), &foreign)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(app.task_status(&task), "dispatched");
}

#[actix_web::test]
async fn activity_counts_task_starts_per_hour_of_the_day_in_any_zone_for_members() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let (mallory, _) = app.init_user("mallory@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app
        .agent(&alice.token, &ws, &rt, json!({"max_concurrent_tasks": 10}))
        .await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(app.task(&alice.token, &agent, &format!("{i}"), 0).await);
        app.claim(&alice.token, &rt).await;
    }
    for id in &ids[..3] {
        app.post(
            &format!("/api/daemon/tasks/{id}/start"),
            &alice.token,
            json!({}),
        )
        .await;
    }
    let started: Vec<_> = ids.iter().map(|id| parse_id(id)).collect();
    app.arrange(move |conn| {
        for (id, at) in started.into_iter().zip([
            "2026-11-20T09:15:00.000Z",
            "2026-11-21T09:59:59.000Z",
            "2026-11-21T23:00:00.000Z",
        ]) {
            seed::backdate_task(conn, id, TaskClock::Started, at.parse().unwrap())?;
        }
        Ok(())
    });
    let r = app
        .get(&format!("/api/runtimes/{rt}/activity"), &alice.token)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!([{"hour": 9, "count": 2}, {"hour": 23, "count": 1}])
    );
    // in a zone, each start's own local hour: UTC-8 in November, +5:30,
    // and +5:45 (09:15 UTC is 15:00 in Kathmandu, 09:59:59 is 15:44:59)
    for (tz, hours) in [
        (
            "America/Los_Angeles",
            json!([{"hour": 1, "count": 2}, {"hour": 15, "count": 1}]),
        ),
        (
            "Asia/Kolkata",
            json!([{"hour": 4, "count": 1}, {"hour": 14, "count": 1}, {"hour": 15, "count": 1}]),
        ),
        (
            "Asia/Kathmandu",
            json!([{"hour": 4, "count": 1}, {"hour": 15, "count": 2}]),
        ),
    ] {
        let r = app
            .get(
                &format!("/api/runtimes/{rt}/activity?tz={tz}"),
                &alice.token,
            )
            .await;
        assert_eq!((r.status, &r.body), (200, &hours), "{tz}");
    }
    let r = app
        .get(
            &format!("/api/runtimes/{rt}/activity?tz=Nowhere"),
            &alice.token,
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (400, "unknown time zone \"Nowhere\"")
    );
    let r = app
        .get(&format!("/api/runtimes/{rt}/activity"), &mallory.token)
        .await;
    assert_eq!(r.status, 404);
}

#[actix_web::test]
async fn pending_hands_out_the_first_100_tasks_in_claim_order() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app
        .agent(&alice.token, &ws, &rt, json!({"max_concurrent_tasks": 1}))
        .await;
    // priorities 0, 1, 2 in turn: claim order is not queueing order
    let mut queued = Vec::new();
    for i in 0..150 {
        let priority = i % 3;
        let id = app.task(&alice.token, &agent, "t", priority).await;
        queued.push((priority, i, id));
    }
    let r = app.claim(&alice.token, &rt).await;
    assert_eq!(r.status, 200);
    let dispatched = r.body["task"]["id"].as_str().unwrap().to_string();
    queued.sort_by_key(|(priority, i, _)| (-priority, *i));
    assert_eq!(queued[0].2, dispatched);

    let r = app
        .get(
            &format!("/api/daemon/runtimes/{rt}/tasks/pending"),
            &alice.token,
        )
        .await;
    assert_eq!(r.status, 200);
    let ids: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    // the dispatched task first, then the head of the queue
    let expected: Vec<&str> = queued
        .iter()
        .take(100)
        .map(|(_, _, id)| id.as_str())
        .collect();
    assert_eq!(ids, expected);
}

#[actix_web::test]
async fn a_result_is_bounded_and_a_long_failure_reason_is_kept_cut() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let done = app.task(&alice.token, &agent, "one", 1).await;
    let failing = app.task(&alice.token, &agent, "two", 0).await;
    for task in [&done, &failing] {
        assert_eq!(
            app.claim(&alice.token, &rt).await.body["task"]["id"],
            task.as_str()
        );
        let r = app
            .post(
                &format!("/api/daemon/tasks/{task}/start"),
                &alice.token,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let complete = format!("/api/daemon/tasks/{done}/complete");
    let r = app
        .post(
            &complete,
            &alice.token,
            json!({"output": "o".repeat(256 * 1024)}),
        )
        .await;
    assert_eq!(r.status, 413, "{:?}", r.body);
    assert_eq!(r.error(), "result too large (limit 262144 bytes)");
    assert_eq!(app.task_status(&done), "running");
    let r = app
        .post(
            &complete,
            &alice.token,
            json!({"output": "o".repeat(200 * 1024)}),
        )
        .await;
    assert_eq!(r.status, 200);

    let r = app
        .post(
            &format!("/api/daemon/tasks/{failing}/fail"),
            &alice.token,
            json!({"error": "e".repeat(100 * 1024)}),
        )
        .await;
    assert_eq!(r.status, 200);
    let error = r.body["error"].as_str().unwrap();
    assert!(error.len() <= 8 * 1024, "{}", error.len());
    assert!(error.ends_with("[truncated: longer than 8 KiB]"));
    assert_eq!(app.task_status(&failing), "failed");
}

#[actix_web::test]
async fn concurrent_single_and_batch_claims_never_share_a_task_or_overrun_a_limit() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let reg = app
        .register(&alice.token, &ws, "mbp", &["claude", "codex"])
        .await;
    assert_eq!(reg.status, 200, "{:?}", reg.body);
    let runtimes: Vec<String> = (0..2)
        .map(|i| reg.body["runtimes"][i]["id"].as_str().unwrap().to_string())
        .collect();
    let mut limits = HashMap::new();
    for i in 0..6 {
        let limit = 1 + i % 3; // 12 slots over both runtimes
        let runtime = &runtimes[i as usize % 2];
        let agent = app
            .agent(
                &alice.token,
                &ws,
                runtime,
                json!({"max_concurrent_tasks": limit}),
            )
            .await;
        for t in 0..5 {
            app.task(&alice.token, &agent, &format!("{i}-{t}"), t).await;
        }
        limits.insert(agent, limit);
    }
    let batch = json!({"daemon_id": "mbp", "runtime_ids": runtimes, "max_tasks": 3});
    let (app, alice, runtimes, batch) = (&app, &alice, &runtimes, &batch);
    let singles = (0..20).map(|i| async move {
        let r = app.claim(&alice.token, &runtimes[i % 2]).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["task"]
            .as_object()
            .map(|t| vec![json!(t)])
            .unwrap_or_default()
    });
    let batches = (0..10).map(|_| async {
        let r = app
            .post("/api/daemon/tasks/claim", &alice.token, batch.clone())
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["tasks"].as_array().unwrap().clone()
    });
    let (singles, batches) = futures_util::join!(
        futures_util::future::join_all(singles),
        futures_util::future::join_all(batches)
    );
    let claimed = singles.into_iter().chain(batches).flatten();
    assert_twelve_fair_claims(app, claimed, &limits);
}

#[actix_web::test]
async fn a_finished_task_is_rerun_as_its_next_attempt() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let task = app.task(&alice.token, &agent, "try this", 3).await;
    let rerun = |token: &str| {
        let (app, path, token) = (&app, format!("/api/tasks/{task}/rerun"), token.to_string());
        async move { app.post(&path, &token, json!({})).await }
    };
    let r = rerun(&alice.token).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "cannot rerun task: it is queued")
    );
    app.claim(&alice.token, &rt).await;
    app.post(
        &format!("/api/daemon/tasks/{task}/fail"),
        &alice.token,
        json!({"error": "no"}),
    )
    .await;
    // a private agent's task is not bob's to see
    let r = rerun(&bob.token).await;
    assert_eq!((r.status, r.error()), (404, "task not found"));

    let r = rerun(&alice.token).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["status"], "queued");
    assert_eq!(r.body["attempt"], 2);
    assert_eq!(r.body["parent_task_id"], task.as_str());
    assert_eq!(r.body["prompt"], "try this");
    assert_eq!(r.body["priority"], 3);
    assert_eq!(r.body["runtime_status"], "online");
    let again = rerun(&alice.token).await;
    assert_eq!(
        again.body["attempt"], 2,
        "each rerun repeats the task it names"
    );
    let r = app
        .post(
            &format!("/api/agents/{agent}/archive"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = rerun(&alice.token).await;
    assert_eq!((r.status, r.error()), (409, "agent is archived"));
}
