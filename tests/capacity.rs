//! Server-side capacity (issue: whose machine is it, item 3): beside each
//! agent's `max_concurrent_tasks`, a runtime, a machine (one owner's
//! daemon, in any workspace) and a workspace each cap the tasks dispatched
//! or running at once. A claim over any of them leaves the task queued;
//! concurrent claims never overrun one.

mod common;

use agenthub::domain::Role;
use common::{count_in, spawn_app, TestApp};
use serde_json::{json, Value};

/// The ids of the runtimes one registration of `daemon_id` made, in the
/// order of `providers`.
async fn machine(
    app: &TestApp,
    token: &str,
    ws: &str,
    daemon_id: &str,
    providers: &[&str],
) -> Vec<String> {
    let r = app.register(token, ws, daemon_id, providers).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let runtimes = r.body["runtimes"].as_array().expect("runtimes");
    providers
        .iter()
        .map(|p| {
            runtimes
                .iter()
                .find(|rt| rt["provider"] == *p)
                .and_then(|rt| rt["id"].as_str())
                .expect("a runtime per provider")
                .to_string()
        })
        .collect()
}

/// An agent on `runtime` that runs up to `max` tasks, with `tasks` queued.
async fn busy_agent(
    app: &TestApp,
    token: &str,
    ws: &str,
    runtime: &str,
    max: i64,
    tasks: usize,
) -> String {
    let agent = app
        .agent(token, ws, runtime, json!({ "max_concurrent_tasks": max }))
        .await;
    for i in 0..tasks {
        app.task(token, &agent, &format!("task {i}"), 0).await;
    }
    agent
}

/// The task a single claim of `runtime` dispatched, or None.
async fn claimed(app: &TestApp, token: &str, runtime: &str) -> Option<String> {
    let r = app.claim(token, runtime).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["task"]["id"].as_str().map(str::to_string)
}

/// Tasks dispatched or running, where `filter` holds.
fn busy(app: &TestApp, filter: &str) -> i64 {
    count_in(
        &app.database,
        &format!(
            "SELECT count(*) FROM agent_task_queue
             WHERE status IN ('dispatched', 'running') AND {filter}"
        ),
    )
}

const OWNER_ONLY: &str = "only the runtime's owner can change how many tasks it runs";

#[actix_web::test]
async fn each_limit_leaves_tasks_queued_until_a_slot_frees() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Admin)));
    let carol = app.add_user("carol@example.com", Some((&ws, Role::Member)));
    let rts = machine(
        &app,
        &alice.token,
        &ws,
        "mbp",
        &["claude", "codex", "gemini"],
    )
    .await;
    let mut agents = Vec::new();
    for rt in &rts {
        agents.push(busy_agent(&app, &alice.token, &ws, rt, 10, 6).await);
    }

    // the runtime's own limit: its owner's, nobody else's
    for token in [&bob.token, &carol.token] {
        let r = app
            .patch(
                &format!("/api/runtimes/{}", rts[0]),
                token,
                json!({"max_concurrent_tasks": 2}),
            )
            .await;
        assert_eq!((r.status, r.error()), (403, OWNER_ONLY));
        let r = app
            .patch(
                &format!("/api/runtimes/{}", rts[0]),
                token,
                json!({"machine_max_concurrent_tasks": 2}),
            )
            .await;
        assert_eq!((r.status, r.error()), (403, OWNER_ONLY));
    }
    let r = app
        .patch(
            &format!("/api/runtimes/{}", rts[0]),
            &alice.token,
            json!({"max_concurrent_tasks": 2}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["max_concurrent_tasks"], 2);
    assert_eq!(r.body["machine_max_concurrent_tasks"], Value::Null);
    assert!(claimed(&app, &alice.token, &rts[0]).await.is_some());
    assert!(claimed(&app, &alice.token, &rts[0]).await.is_some());
    assert_eq!(
        claimed(&app, &alice.token, &rts[0]).await,
        None,
        "the runtime is full"
    );
    assert_eq!(
        count_in(
            &app.database,
            &format!(
                "SELECT count(*) FROM agent_task_queue WHERE agent_id = '{}' AND status = 'queued'",
                agents[0]
            )
        ),
        4,
        "its tasks stay queued"
    );

    // the machine's: every runtime of the daemon shows it
    let r = app
        .patch(
            &format!("/api/runtimes/{}", rts[1]),
            &alice.token,
            json!({"machine_max_concurrent_tasks": 4}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for rt in &rts {
        let listed = app.listed_runtime(&alice.token, &ws, rt).await;
        assert_eq!(listed["machine_max_concurrent_tasks"], 4, "{rt}");
    }
    assert!(claimed(&app, &alice.token, &rts[1]).await.is_some());
    assert!(claimed(&app, &alice.token, &rts[2]).await.is_some());
    assert_eq!(
        claimed(&app, &alice.token, &rts[1]).await,
        None,
        "the machine is full"
    );
    assert_eq!(claimed(&app, &alice.token, &rts[2]).await, None);
    let daemon = app.daemon_token(&alice.token, &ws, "mbp").await;
    let r = app
        .post(
            "/api/daemon/tasks/claim",
            &daemon,
            json!({"daemon_id": "mbp", "runtime_ids": rts, "max_tasks": 10}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["tasks"],
        json!([]),
        "a batch claim is held to it too"
    );
    assert_eq!(busy(&app, "1 = 1"), 4);

    // a finished task frees its slot for any runtime of the machine
    let done = app
        .column(&format!(
            "SELECT id FROM agent_task_queue WHERE runtime_id = '{}' AND status = 'dispatched'",
            rts[0]
        ))
        .remove(0);
    for step in ["start", "complete"] {
        let r = app
            .post(
                &format!("/api/daemon/tasks/{done}/{step}"),
                &daemon,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{step}: {:?}", r.body);
    }
    assert!(claimed(&app, &alice.token, &rts[2]).await.is_some());
    assert_eq!(claimed(&app, &alice.token, &rts[2]).await, None);

    // the workspace's: managers set it, members do not
    let r = app
        .patch(
            &format!("/api/workspaces/{ws}"),
            &carol.token,
            json!({"max_concurrent_tasks": 5}),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = app
        .patch(
            &format!("/api/runtimes/{}", rts[2]),
            &alice.token,
            json!({"machine_max_concurrent_tasks": null}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["machine_max_concurrent_tasks"], Value::Null);
    let r = app
        .patch(
            &format!("/api/workspaces/{ws}"),
            &bob.token,
            json!({"max_concurrent_tasks": 6}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["max_concurrent_tasks"], 6);
    assert!(claimed(&app, &alice.token, &rts[2]).await.is_some());
    assert!(claimed(&app, &alice.token, &rts[1]).await.is_some());
    assert_eq!(
        claimed(&app, &alice.token, &rts[2]).await,
        None,
        "the workspace is full"
    );
    assert_eq!(busy(&app, "1 = 1"), 6);

    // lowering a limit leaves what runs alone; lifting them all frees the queue
    let r = app
        .patch(
            &format!("/api/runtimes/{}", rts[0]),
            &alice.token,
            json!({"max_concurrent_tasks": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(busy(&app, &format!("runtime_id = '{}'", rts[0])), 1);
    assert_eq!(busy(&app, "1 = 1"), 6, "nothing was taken back");
    let r = app
        .patch(
            &format!("/api/workspaces/{ws}"),
            &alice.token,
            json!({"max_concurrent_tasks": null}),
        )
        .await;
    assert_eq!(r.body["max_concurrent_tasks"], Value::Null);
    assert!(claimed(&app, &alice.token, &rts[2]).await.is_some());
    assert_eq!(
        claimed(&app, &alice.token, &rts[0]).await,
        None,
        "still at its own limit"
    );
}

#[actix_web::test]
async fn thirty_concurrent_claims_on_one_machine_never_exceed_a_limit() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let rts = machine(
        &app,
        &alice.token,
        &ws,
        "mbp",
        &["claude", "codex", "gemini"],
    )
    .await;
    let mut agents = Vec::new();
    for rt in &rts {
        for _ in 0..2 {
            agents.push(busy_agent(&app, &alice.token, &ws, rt, 3, 8).await);
        }
    }
    let bob_rt = app.runtime(&bob.token, &ws, "box", "claude").await;
    busy_agent(&app, &bob.token, &ws, &bob_rt, 6, 8).await;
    for (rt, body) in [
        (&rts[0], json!({"max_concurrent_tasks": 4})),
        (
            &rts[1],
            json!({"max_concurrent_tasks": 5, "machine_max_concurrent_tasks": 9}),
        ),
    ] {
        let r = app
            .patch(&format!("/api/runtimes/{rt}"), &alice.token, body)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = app
        .patch(
            &format!("/api/workspaces/{ws}"),
            &alice.token,
            json!({"max_concurrent_tasks": 11}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let daemon = app.daemon_token(&alice.token, &ws, "mbp").await;

    let check = |when: &str| {
        for (filter, limit) in [
            (format!("runtime_id = '{}'", rts[0]), 4),
            (format!("runtime_id = '{}'", rts[1]), 5),
            (
                format!("runtime_id IN ('{}', '{}', '{}')", rts[0], rts[1], rts[2]),
                9,
            ),
            ("1 = 1".to_string(), 11),
        ] {
            let n = busy(&app, &filter);
            assert!(n <= limit, "{when}: {n} busy where {filter}, over {limit}");
        }
        for agent in &agents {
            let n = busy(&app, &format!("agent_id = '{agent}'"));
            assert!(n <= 3, "{when}: agent {agent} runs {n}");
        }
    };

    // 30 at once: single claims of each runtime, batch claims of the
    // machine, and claims of another member's machine in the workspace
    let claims = (0..30).map(|i| {
        let (app, rts, daemon, bob_rt, bob, alice) = (&app, &rts, &daemon, &bob_rt, &bob, &alice);
        async move {
            let r = match i % 6 {
                0..=2 => app.claim(&alice.token, &rts[i % 3]).await,
                3 | 4 => {
                    app.post(
                        "/api/daemon/tasks/claim",
                        daemon,
                        json!({"daemon_id": "mbp", "runtime_ids": rts, "max_tasks": 3}),
                    )
                    .await
                }
                _ => app.claim(&bob.token, bob_rt).await,
            };
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
    });
    futures_util::future::join_all(claims).await;
    check("after 30 concurrent claims");

    // claims one after another then fill every slot left, and no more
    for _ in 0..4 {
        for rt in &rts {
            claimed(&app, &alice.token, rt).await;
        }
        claimed(&app, &bob.token, &bob_rt).await;
    }
    check("after filling up");
    assert_eq!(
        busy(&app, "1 = 1"),
        11,
        "the workspace's limit is what stops them"
    );
}
