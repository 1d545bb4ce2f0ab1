//! The background sweeper (SPEC §6), with second-scale thresholds.

mod common;

use agenthub::domain::Timestamp;
use agenthub::jobs::sweeper::sweep_once;
use agenthub::store::seed::{self, TaskClock};
use common::faults::{self, Fault};
use common::{eventually, parse_id, spawn_app, spawn_app_with, thresholds};
use serde_json::json;

fn error_of(app: &common::TestApp, task: &str) -> Option<String> {
    app.task_row(task).error
}

#[actix_web::test]
async fn silent_runtime_goes_offline_and_its_work_fails_on_the_interval() {
    let app = spawn_app_with(|c| {
        c.sweeper.interval_secs = 1;
        c.sweeper.stale_after_secs = 1;
        c.sweeper.reconnect_grace_secs = 1;
    })
    .await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let task = app.task(&alice.token, &agent, "x", 0).await;
    app.claim(&alice.token, &rt).await;
    let mut events = app.state.events.subscribe(ws.parse().unwrap());

    assert!(eventually(10, || app.runtime_status(&rt) == "offline").await);
    assert!(eventually(5, || app.task_status(&task) == "failed").await);
    assert_eq!(
        error_of(&app, &task).as_deref(),
        Some("runtime did not reconnect within the grace period")
    );
    assert_eq!(
        app.task_row(&task).failure_reason.as_deref(),
        Some("runtime_reconnect_timeout")
    );
    assert!(eventually(5, || app.agent_status(&agent) == "idle").await);

    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        if e.kind == "daemon:register" {
            assert_eq!(e.payload()["action"], "stale_sweep");
            assert_eq!(e.payload()["runtime_ids"], json!([rt]));
        }
        if e.kind == "task:failed" {
            assert_eq!(
                e.payload(),
                json!({"task_id": task, "agent_id": agent,
                       "failure_reason": "runtime_reconnect_timeout"})
            );
        }
        kinds.push(e.kind.to_string());
    }
    // a failure of the infrastructure: its second attempt is queued
    assert_eq!(
        kinds,
        [
            "daemon:register",
            "task:failed",
            "agent:status",
            "task:retried"
        ]
    );
}

#[actix_web::test]
async fn work_on_an_offline_runtime_waits_out_the_reconnect_grace() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let back = app.task(&alice.token, &agent, "back in time", 0).await;
    app.claim(&alice.token, &rt).await;
    let post = |path: String| {
        let (app, token) = (&app, alice.token.clone());
        async move { app.post(&path, &token, json!({})).await }
    };
    post(format!("/api/daemon/tasks/{back}/start")).await;
    let deregister = || {
        app.post(
            "/api/daemon/deregister",
            &alice.token,
            json!({"runtime_ids": [rt]}),
        )
    };
    deregister().await;

    // within the grace nothing is lost: the daemon comes back and finishes
    let report = sweep_once(&app.state, &thresholds());
    assert_eq!(report.offline_task_failures, 0);
    assert_eq!(app.task_status(&back), "running");
    let hb = app
        .post(
            "/api/daemon/heartbeat",
            &alice.token,
            json!({"runtime_id": rt}),
        )
        .await;
    assert_eq!(hb.status, 200);
    assert_eq!(app.runtime_status(&rt), "online");
    // and it is told the task is still its own
    assert_eq!(hb.body["active_tasks"][0]["id"], back.as_str());
    assert_eq!(hb.body["active_tasks"][0]["status"], "running");
    let r = post(format!("/api/daemon/tasks/{back}/complete")).await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (200, Some("completed"))
    );

    // past the grace, the work fails and the slot is free again
    let lost = app.task(&alice.token, &agent, "lost", 0).await;
    app.claim(&alice.token, &rt).await;
    deregister().await;
    app.age_runtime(&rt, 10_801);
    let report = sweep_once(&app.state, &thresholds());
    assert_eq!(report.stale_runtimes, 0);
    assert_eq!(report.offline_task_failures, 1);
    assert_eq!(app.task_status(&lost), "failed");
    assert_eq!(
        error_of(&app, &lost).as_deref(),
        Some("runtime did not reconnect within the grace period")
    );
    assert_eq!(
        app.task_row(&lost).failure_reason.as_deref(),
        Some("runtime_reconnect_timeout")
    );
    assert_eq!(app.agent_status(&agent), "idle");
    // a daemon that comes back too late is told the task is no longer its
    // own (its retry waits in the queue)
    let hb = app
        .post(
            "/api/daemon/heartbeat",
            &alice.token,
            json!({"runtime_id": rt}),
        )
        .await;
    assert_eq!(hb.body["active_tasks"], json!([]));
}

#[actix_web::test]
async fn queued_work_for_a_runtime_that_stays_offline_expires() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let gone = app.runtime(&alice.token, &ws, "old-box", "claude").await;
    let here = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let waiting_agent = app.agent(&alice.token, &ws, &gone, json!({})).await;
    let busy_agent = app.agent(&alice.token, &ws, &here, json!({})).await;
    app.deregister(&alice.token, &[&gone]).await;
    // queueing for an offline runtime is allowed, and said
    let r = app
        .post(
            &format!("/api/agents/{waiting_agent}/tasks"),
            &alice.token,
            json!({"prompt": "when you are back"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["runtime_status"], "offline");
    let waiting = r.body["id"].as_str().unwrap().to_string();
    let r = app
        .post(
            &format!("/api/agents/{busy_agent}/tasks"),
            &alice.token,
            json!({"prompt": "soon"}),
        )
        .await;
    assert_eq!(r.body["runtime_status"], "online");
    let queued_here = r.body["id"].as_str().unwrap().to_string();
    let mut events = app.state.events.subscribe(ws.parse().unwrap());

    // younger than the TTL: it waits
    assert_eq!(sweep_once(&app.state, &thresholds()).expired_tasks, 0);
    let old = Timestamp::now() - chrono::Duration::seconds(7201);
    let backdated = [parse_id(&waiting), parse_id(&queued_here)];
    app.arrange(move |conn| {
        for id in backdated {
            seed::backdate_task(conn, id, TaskClock::Queued, old)?;
        }
        Ok(())
    });
    app.age_runtime(&gone, 7201);
    let report = sweep_once(&app.state, &thresholds());
    assert_eq!(report.expired_tasks, 1);
    let row = app.task_row(&waiting);
    assert_eq!(row.status.as_str(), "failed");
    assert_eq!(row.failure_reason.as_deref(), Some("queued_expired"));
    assert_eq!(
        row.error.as_deref(),
        Some("task expired in the queue: its runtime stayed offline")
    );
    // a runtime that is online claims its old work when it gets to it
    assert_eq!(app.task_status(&queued_here), "queued");
    let expired: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
        .filter(|e| e.kind.starts_with("task:"))
        .map(|e| (e.kind.to_string(), e.payload()))
        .collect();
    assert_eq!(
        expired,
        [(
            "task:expired".to_string(),
            json!({"task_id": waiting, "agent_id": waiting_agent,
                   "failure_reason": "queued_expired"})
        )]
    );
}

#[actix_web::test]
async fn stuck_tasks_time_out() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let dispatched = app.task(&alice.token, &agent, "d", 2).await;
    let running = app.task(&alice.token, &agent, "r", 1).await;
    let fresh = app.task(&alice.token, &agent, "f", 0).await;
    for _ in 0..3 {
        app.claim(&alice.token, &rt).await;
    }
    app.post(
        &format!("/api/daemon/tasks/{running}/start"),
        &alice.token,
        json!({}),
    )
    .await;
    app.post(
        &format!("/api/daemon/tasks/{fresh}/start"),
        &alice.token,
        json!({}),
    )
    .await;
    let stuck = [
        (parse_id(&dispatched), TaskClock::Dispatched),
        (parse_id(&running), TaskClock::Started),
    ];
    app.arrange(move |conn| {
        for (id, clock) in stuck {
            seed::backdate_task(conn, id, clock, "2020-01-01T00:00:00.000Z".parse().unwrap())?;
        }
        Ok(())
    });

    // a long run on a runtime that heartbeats goes on
    let report = sweep_once(&app.state, &thresholds());
    assert_eq!(report.timed_out_tasks, 1);
    assert_eq!(app.task_status(&running), "running");
    // once its runtime is not online, the running timeout applies
    app.deregister(&alice.token, &[&rt]).await;
    let report = sweep_once(&app.state, &thresholds());
    assert_eq!(report.timed_out_tasks, 1);
    for (task, reason) in [
        (&dispatched, "dispatch_timeout"),
        (&running, "running_timeout"),
    ] {
        assert_eq!(app.task_status(task), "failed");
        assert_eq!(error_of(&app, task).as_deref(), Some("task timed out"));
        assert_eq!(app.task_row(task).failure_reason.as_deref(), Some(reason));
    }
    // a fresh run waits out the reconnect grace
    assert_eq!(app.task_status(&fresh), "running");
    assert_eq!(app.agent_status(&agent), "working");
}

#[actix_web::test]
async fn gc_deletes_only_long_offline_runtimes_without_any_agent() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let empty = app.runtime(&alice.token, &ws, "old", "claude").await;
    let archived_agent = app.runtime(&alice.token, &ws, "old", "codex").await;
    let recent = app.runtime(&alice.token, &ws, "new", "claude").await;
    let online = app.runtime(&alice.token, &ws, "live", "claude").await;
    let agent = app
        .agent(&alice.token, &ws, &archived_agent, json!({}))
        .await;
    app.post(
        &format!("/api/agents/{agent}/archive"),
        &alice.token,
        json!({}),
    )
    .await;
    app.post(
        "/api/daemon/deregister",
        &alice.token,
        json!({"runtime_ids": [empty, archived_agent, recent]}),
    )
    .await;
    for rt in [&empty, &archived_agent] {
        app.age_runtime(rt, 7200);
    }
    let mut events = app.state.events.subscribe(ws.parse().unwrap());

    let report = sweep_once(&app.state, &thresholds());
    assert_eq!(report.deleted_runtimes, 1);
    let left = app.column("SELECT id FROM agent_runtime ORDER BY id");
    let mut kept = [archived_agent, recent, online];
    kept.sort();
    assert_eq!(left, kept);
    let gc = std::iter::from_fn(|| events.try_recv().ok())
        .find(|e| e.payload()["action"] == "runtime_gc")
        .expect("runtime_gc event");
    assert_eq!(gc.payload()["runtime_ids"], json!([empty]));
}

#[actix_web::test]
async fn a_swept_daemon_comes_back_with_the_same_runtime_and_agents() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let rt2 = app.runtime(&alice.token, &ws, "mbp", "codex").await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    app.age_runtime(&rt, 120);
    app.age_runtime(&rt2, 120);
    assert_eq!(sweep_once(&app.state, &thresholds()).stale_runtimes, 2);
    assert_eq!(app.runtime_status(&rt), "offline");

    let r = app
        .post(
            "/api/daemon/heartbeat",
            &alice.token,
            json!({"runtime_id": rt}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(app.runtime_status(&rt), "online");
    assert_eq!(app.agent_runtime(&agent), rt);
    let r = app.register(&alice.token, &ws, "mbp", &["codex"]).await;
    assert_eq!(r.body["runtimes"][0]["id"], rt2.as_str());
    assert_eq!(r.body["runtimes"][0]["status"], "online");
    let task = app.task(&alice.token, &agent, "welcome back", 0).await;
    assert_eq!(
        app.claim(&alice.token, &rt).await.body["task"]["id"],
        task.as_str()
    );
}

#[actix_web::test]
async fn a_failing_step_does_not_stop_the_others_or_the_actor() {
    let app = spawn_app_with(|c| {
        c.sweeper.interval_secs = 1;
        c.sweeper.stale_after_secs = 1;
        c.sweeper.offline_runtime_ttl_secs = 1;
    })
    .await;
    let (alice, ws) = app.init_user("alice@example.com");
    let stale = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let gone = app.runtime(&alice.token, &ws, "old", "claude").await;
    app.post(
        "/api/daemon/deregister",
        &alice.token,
        json!({"runtime_ids": [gone]}),
    )
    .await;
    // the stale step cannot write while this fault lasts
    faults::fault(
        &app,
        Fault::RefuseUpdate {
            table: "agent_runtime",
            column: "status",
            when: "NEW.status = 'offline'",
        },
    );
    assert!(eventually(10, || app.count("SELECT count(*) FROM agent_runtime") == 1).await);
    assert_eq!(app.runtime_status(&stale), "online");

    faults::clear_faults(&app);
    // the next cycles mark it offline and, past the 1 s TTL, collect it:
    // only an offline runtime can be collected, so both steps ran
    assert!(eventually(10, || app.count("SELECT count(*) FROM agent_runtime") == 0).await);
}

/// Queues a ping on `rt`; returns its id.
async fn ping(app: &common::TestApp, token: &str, rt: &str) -> String {
    let r = app
        .post(&format!("/api/runtimes/{rt}/ping"), token, json!({}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

/// How a ping reads: the reply's status, and the ping's.
async fn status(app: &common::TestApp, token: &str, rt: &str, id: &str) -> (u16, String) {
    let r = app
        .get(&format!("/api/runtimes/{rt}/ping/{id}"), token)
        .await;
    (
        r.status,
        r.body["status"].as_str().unwrap_or("").to_string(),
    )
}

#[actix_web::test]
async fn pings_are_forgotten_an_hour_after_they_ended() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let answered = ping(&app, &alice.token, &rt).await;
    app.post(
        "/api/daemon/heartbeat",
        &alice.token,
        json!({"runtime_id": rt}),
    )
    .await;
    let r = app
        .post(
            &format!("/api/daemon/runtimes/{rt}/ping/{answered}/result"),
            &alice.token,
            json!({"status": "completed", "output": "pong"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let unanswered = ping(&app, &alice.token, &rt).await;
    // the answered one ended now, the other when it timed out after 60 s
    app.age_probes(3590);
    assert_eq!(
        status(&app, &alice.token, &rt, &answered).await,
        (200, "completed".into())
    );
    assert_eq!(
        status(&app, &alice.token, &rt, &unanswered).await,
        (200, "timeout".into())
    );
    let report = sweep_once(&app.state, &thresholds());
    assert_eq!(report.forgotten_probes, 0);
    assert_eq!(app.count("SELECT count(*) FROM runtime_probe"), 2);

    app.age_probes(80);
    assert_eq!(status(&app, &alice.token, &rt, &answered).await.0, 404);
    assert_eq!(status(&app, &alice.token, &rt, &unanswered).await.0, 404);
    let report = sweep_once(&app.state, &thresholds());
    assert_eq!(report.forgotten_probes, 2);
    assert_eq!(app.count("SELECT count(*) FROM runtime_probe"), 0);
}

#[actix_web::test]
async fn infrastructure_failures_are_retried_up_to_the_agents_max_attempts() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let twice = app
        .agent(&alice.token, &ws, &rt, json!({"max_concurrent_tasks": 10}))
        .await;
    let once = app
        .agent(&alice.token, &ws, &rt, json!({"max_attempts": 1}))
        .await;
    let r = app.get(&format!("/api/agents/{twice}"), &alice.token).await;
    assert_eq!(r.body["max_attempts"], 2);
    let r = app
        .request(
            "PUT",
            &format!("/api/agents/{once}"),
            Some(&alice.token),
            Some(&json!({"max_attempts": 11}).to_string()),
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (400, "max_attempts must be between 1 and 10")
    );
    let first = app.task(&alice.token, &twice, "flaky network", 0).await;
    let single = app.task(&alice.token, &once, "no retries", 0).await;
    let broken = app.task(&alice.token, &twice, "bad code", 0).await;
    for _ in 0..3 {
        app.claim(&alice.token, &rt).await;
    }
    // the work's own failure is not retried
    let r = app
        .post(
            &format!("/api/daemon/tasks/{broken}/fail"),
            &alice.token,
            json!({"error": "tests fail"}),
        )
        .await;
    assert_eq!(r.body["failure_reason"], "agent_error");
    let r = app
        .post(
            &format!("/api/daemon/tasks/{first}/usage"),
            &alice.token,
            json!({"usage": [{"provider": "anthropic", "model": "sonnet", "input_tokens": 700}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let usage = format!("/api/usage/daily?workspace_id={ws}&days=30");
    let used = app.get(&usage, &alice.token).await.body;
    assert_eq!(used[0]["total_input_tokens"], 700, "{used}");
    let mut events = app.state.events.subscribe(ws.parse().unwrap());

    // the daemon never comes back: both fail, one is retried
    app.deregister(&alice.token, &[&rt]).await;
    app.age_runtime(&rt, 10_801);
    let report = sweep_once(&app.state, &thresholds());
    assert_eq!(report.offline_task_failures, 2);
    let chain = |task: &str| {
        app.select(&format!(
            "SELECT id, attempt, status FROM agent_task_queue WHERE parent_task_id = '{task}'"
        ))
    };
    assert!(chain(&single).is_empty(), "max_attempts 1: no retry");
    assert!(chain(&broken).is_empty(), "agent_error: no retry");
    let retry = chain(&first);
    assert_eq!(retry.len(), 1);
    assert_eq!((&retry[0][1], &retry[0][2]), (&json!(2), &json!("queued")));
    let second = retry[0][0].as_str().unwrap().to_string();
    let r = app
        .get(&format!("/api/agents/{twice}/tasks"), &alice.token)
        .await;
    let listed = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == second.as_str())
        .cloned()
        .expect("the retry is listed");
    assert_eq!(listed["parent_task_id"], first.as_str());
    assert_eq!(listed["attempt"], 2);
    assert_eq!(listed["prompt"], "flaky network");
    let retried: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
        .filter(|e| e.kind == "task:retried")
        .map(|e| e.payload())
        .collect();
    assert_eq!(
        retried,
        [json!({"task_id": second, "agent_id": twice, "parent_task_id": first, "attempt": 2})]
    );

    // failing and retrying leave what was used as it was
    assert_eq!(app.get(&usage, &alice.token).await.body, used);

    // the second attempt fails the same way: no third
    app.post(
        "/api/daemon/heartbeat",
        &alice.token,
        json!({"runtime_id": rt}),
    )
    .await;
    assert_eq!(
        app.claim(&alice.token, &rt).await.body["task"]["id"],
        second.as_str()
    );
    app.deregister(&alice.token, &[&rt]).await;
    app.age_runtime(&rt, 10_801);
    assert_eq!(
        sweep_once(&app.state, &thresholds()).offline_task_failures,
        1
    );
    assert_eq!(app.task_status(&second), "failed");
    assert!(chain(&second).is_empty(), "two attempts at most");
}
