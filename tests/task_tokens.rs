//! Task-scoped tokens (`mat_`): minted at claim for the agent a daemon
//! starts, they reach that task's daemon routes and its agent, nothing
//! else, and stop working when the task ends or the token expires. Batch
//! claims hand out several tasks of one machine at once, each with its own.

mod common;

use agenthub::domain::Role;
use agenthub::store::seed::TokenKind;
use common::{spawn_app, TestApp};
use serde::Deserialize;
use serde_json::json;

/// The fields of a claimed task the current Multica daemon reads (its
/// `Task` type: strings, `auth_token` omitted when empty).
#[derive(Debug, Deserialize)]
struct DaemonTask {
    id: String,
    agent_id: String,
    runtime_id: String,
    #[serde(default)]
    issue_id: Option<String>,
    workspace_id: String,
    agent: Option<DaemonAgent>,
    #[serde(default)]
    auth_token: String,
}

#[derive(Debug, Deserialize)]
struct DaemonAgent {
    id: String,
    name: String,
    instructions: String,
}

#[derive(Debug, Deserialize)]
struct ClaimReply {
    task: Option<DaemonTask>,
}

#[derive(Debug, Deserialize)]
struct BatchReply {
    tasks: Vec<DaemonTask>,
}

fn is_task_token(token: &str) -> bool {
    token.strip_prefix("mat_").is_some_and(|hex| {
        hex.len() == 40
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

struct Setup {
    ws: String,
    owner: String,
    runtime: String,
    agent: String,
}

async fn setup(app: &TestApp) -> Setup {
    let (alice, ws) = app.init_user("alice@example.com");
    let runtime = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app
        .agent(
            &alice.token,
            &ws,
            &runtime,
            json!({"instructions": "be brief"}),
        )
        .await;
    Setup {
        ws,
        owner: alice.token,
        runtime,
        agent,
    }
}

async fn claim(app: &TestApp, token: &str, runtime: &str) -> DaemonTask {
    let r = app.claim(token, runtime).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let reply: ClaimReply = serde_json::from_value(r.body).expect("claim reply");
    reply.task.expect("a task")
}

#[actix_web::test]
async fn a_claim_mints_a_task_token_stored_only_as_its_hash() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let daemon = app.daemon_token(&s.owner, &s.ws, "mbp").await;
    let queued = app.task(&s.owner, &s.agent, "fix it", 0).await;
    let task = claim(&app, &daemon, &s.runtime).await;
    assert_eq!(task.id, queued);
    assert_eq!(
        (task.agent_id.as_str(), task.runtime_id.as_str()),
        (s.agent.as_str(), s.runtime.as_str())
    );
    assert_eq!(task.workspace_id, s.ws);
    assert_eq!(task.issue_id, None);
    let agent = task.agent.as_ref().expect("agent");
    assert_eq!(
        (
            agent.id.as_str(),
            agent.name.as_str(),
            agent.instructions.as_str()
        ),
        (s.agent.as_str(), "helper", "be brief")
    );
    assert!(is_task_token(&task.auth_token), "{}", task.auth_token);
    // the daemon's own credential is never echoed, and the token is stored
    // only as its SHA-256
    let dump = app.dump();
    assert!(!dump.contains(&task.auth_token));
    assert!(!dump.contains(&daemon));
    let digest = app.count(&format!(
        "SELECT count(*) FROM task_token WHERE task_id = '{}' AND length(token_hash) = 64",
        task.id
    ));
    assert_eq!(digest, 1);
}

#[actix_web::test]
async fn a_task_token_reaches_its_task_and_agent_only() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let other_agent = app
        .agent(&s.owner, &s.ws, &s.runtime, json!({"name": "other"}))
        .await;
    app.task(&s.owner, &s.agent, "mine", 1).await;
    let other = app.task(&s.owner, &other_agent, "not mine", 0).await;
    let task = claim(&app, &s.owner, &s.runtime).await;
    let token = task.auth_token.clone();
    let id = &task.id;

    // its own task's daemon routes
    let r = app
        .get(&format!("/api/daemon/tasks/{id}/status"), &token)
        .await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (200, Some("dispatched"))
    );
    for (path, body) in [
        (format!("/api/daemon/tasks/{id}/start"), json!({})),
        (
            format!("/api/daemon/tasks/{id}/progress"),
            json!({"summary": "half way"}),
        ),
        (
            format!("/api/daemon/tasks/{id}/messages"),
            json!({"messages": []}),
        ),
        (
            format!("/api/daemon/tasks/{id}/usage"),
            json!({"usage": [{"provider": "anthropic", "model": "opus", "input_tokens": 3}]}),
        ),
    ] {
        let r = app.post(&path, &token, body).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
    }
    // and reads of its agent
    let r = app.get(&format!("/api/agents/{}", s.agent), &token).await;
    assert_eq!(
        (r.status, r.body["id"].as_str()),
        (200, Some(s.agent.as_str()))
    );

    // nothing else
    let before = app.dump();
    let r = app.get(&format!("/api/agents/{other_agent}"), &token).await;
    assert_eq!(r.status, 404);
    let r = app
        .get(&format!("/api/daemon/tasks/{other}/status"), &token)
        .await;
    assert_eq!(r.status, 404);
    for path in [
        format!("/api/daemon/tasks/{other}/start"),
        format!("/api/daemon/runtimes/{}/tasks/claim", s.runtime),
    ] {
        assert_eq!(
            app.post(&path, &token, json!({})).await.status,
            404,
            "{path}"
        );
    }
    let r = app
        .post(
            "/api/daemon/heartbeat",
            &token,
            json!({"runtime_id": s.runtime}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app.register(&token, &s.ws, "mbp", &["claude"]).await;
    assert_eq!(r.status, 404);
    for path in [
        "/api/me".to_string(),
        format!("/api/runtimes?workspace_id={}", s.ws),
        "/api/workspaces".into(),
    ] {
        let r = app.get(&path, &token).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(
            r.error(),
            "this route needs a personal access token, not a task token"
        );
    }
    assert_eq!(before, app.dump());
}

#[actix_web::test]
async fn a_task_token_ends_with_its_task() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    for (prompt, end) in [
        ("complete", "complete"),
        ("fail", "fail"),
        ("cancel", "cancel"),
    ] {
        app.task(&s.owner, &s.agent, prompt, 0).await;
        let task = claim(&app, &s.owner, &s.runtime).await;
        let status = format!("/api/daemon/tasks/{}/status", task.id);
        assert_eq!(app.get(&status, &task.auth_token).await.status, 200);
        let r = match end {
            "cancel" => {
                app.post(
                    &format!("/api/tasks/{}/cancel", task.id),
                    &s.owner,
                    json!({}),
                )
                .await
            }
            _ => {
                let start = format!("/api/daemon/tasks/{}/start", task.id);
                assert_eq!(app.post(&start, &s.owner, json!({})).await.status, 200);
                app.post(
                    &format!("/api/daemon/tasks/{}/{end}", task.id),
                    &s.owner,
                    json!({}),
                )
                .await
            }
        };
        assert_eq!(r.status, 200, "{end}: {:?}", r.body);
        // the token is gone with its task
        let r = app.get(&status, &task.auth_token).await;
        assert_eq!((r.status, r.error()), (401, "invalid token"), "{end}");
        assert_eq!(
            app.count(&format!(
                "SELECT count(*) FROM task_token WHERE task_id = '{}'",
                task.id
            )),
            0
        );
    }
}

#[actix_web::test]
async fn a_task_token_expires() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    app.task(&s.owner, &s.agent, "long", 0).await;
    let task = claim(&app, &s.owner, &s.runtime).await;
    app.expire_token(TokenKind::Task, &task.auth_token);
    let r = app
        .get(
            &format!("/api/daemon/tasks/{}/status", task.id),
            &task.auth_token,
        )
        .await;
    assert_eq!((r.status, r.error()), (401, "token has expired"));
}

#[actix_web::test]
async fn a_batch_claim_hands_out_a_machines_best_tasks_each_with_its_token() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let reg = app
        .register(&alice.token, &ws, "mbp", &["claude", "codex"])
        .await;
    assert_eq!(reg.status, 200);
    let claude = reg.body["runtimes"][0]["id"].as_str().unwrap().to_string();
    let codex = reg.body["runtimes"][1]["id"].as_str().unwrap().to_string();
    let laptop = app.runtime(&alice.token, &ws, "laptop", "claude").await;
    let bobs = app.runtime(&bob.token, &ws, "bob-mbp", "claude").await;
    app.share_runtime(&bob.token, &bobs).await;
    let mut expected = Vec::new();
    for (runtime, priority) in [
        (&claude, 5),
        (&codex, 9),
        (&laptop, 10),
        (&bobs, 10),
        (&claude, 1),
    ] {
        let agent = app.agent(&alice.token, &ws, runtime, json!({})).await;
        let task = app.task(&alice.token, &agent, "p", priority).await;
        if runtime == &claude || runtime == &codex {
            expected.push((priority, task));
        }
    }
    expected.sort_by_key(|e| std::cmp::Reverse(e.0));
    let daemon = app.daemon_token(&alice.token, &ws, "mbp").await;
    let body = json!({"daemon_id": "mbp", "runtime_ids": [claude, codex, laptop, bobs, "not-a-uuid"], "max_tasks": 2});
    let r = app
        .post("/api/daemon/tasks/claim", &daemon, body.clone())
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let reply: BatchReply = serde_json::from_value(r.body).expect("batch reply");
    let ids: Vec<&str> = reply.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [expected[0].1.as_str(), expected[1].1.as_str()],
        "best first, this machine only"
    );
    assert_eq!(reply.tasks[0].runtime_id, codex);
    assert!(reply.tasks.iter().all(|t| is_task_token(&t.auth_token)));
    assert_ne!(reply.tasks[0].auth_token, reply.tasks[1].auth_token);
    // the rest of this machine's work, then nothing
    let r = app
        .post("/api/daemon/tasks/claim", &daemon, body.clone())
        .await;
    let reply: BatchReply = serde_json::from_value(r.body).unwrap();
    assert_eq!(reply.tasks.len(), 1);
    assert_eq!(reply.tasks[0].id, expected[2].1);
    let r = app.post("/api/daemon/tasks/claim", &daemon, body).await;
    assert_eq!(r.body, json!({"tasks": []}));
    // laptop's and bob's tasks are still queued
    assert_eq!(
        app.count("SELECT count(*) FROM agent_task_queue WHERE status = 'queued'"),
        2
    );
}

#[actix_web::test]
async fn a_batch_claim_checks_its_request() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let daemon = app.daemon_token(&s.owner, &s.ws, "mbp").await;
    let before = app.dump();
    let cases = [
        (
            json!({"runtime_ids": [s.runtime], "max_tasks": 1}),
            400,
            "daemon_id is required",
        ),
        (
            json!({"daemon_id": "other", "runtime_ids": [s.runtime], "max_tasks": 1}),
            403,
            "daemon_id does not match token",
        ),
        (
            json!({"daemon_id": "mbp", "runtime_ids": [s.runtime], "max_tasks": -1}),
            400,
            "max_tasks must not be negative",
        ),
    ];
    for (body, status, message) in cases {
        let r = app
            .post("/api/daemon/tasks/claim", &daemon, body.clone())
            .await;
        assert_eq!((r.status, r.error()), (status, message), "{body}");
    }
    assert_eq!(before, app.dump());
    // zero free slots claims nothing; more than 32 is capped at 32
    let r = app
        .request(
            "PUT",
            &format!("/api/agents/{}", s.agent),
            Some(&s.owner),
            Some(&json!({"max_concurrent_tasks": 100}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200);
    for i in 0..40 {
        app.task(&s.owner, &s.agent, &format!("t{i}"), 0).await;
    }
    let claim = |max: i64| {
        let body = json!({"daemon_id": "mbp", "runtime_ids": [s.runtime], "max_tasks": max});
        let (app, daemon) = (&app, &daemon);
        async move { app.post("/api/daemon/tasks/claim", daemon, body).await }
    };
    assert_eq!(claim(0).await.body, json!({"tasks": []}));
    let r = claim(100).await;
    assert_eq!(r.body["tasks"].as_array().unwrap().len(), 32);
}

#[actix_web::test]
async fn a_task_token_request_racing_its_tasks_end_is_refused() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    app.task(&s.owner, &s.agent, "work", 0).await;
    let task = claim(&app, &s.owner, &s.runtime).await;
    let id: agenthub::domain::TaskId = task.id.parse().unwrap();
    // the task is cancelled in a write that holds the writer's turn for a
    // second after it ran: the report below is authenticated while the
    // task still runs, and its own write comes after the cancellation
    let writer = app
        .while_a_write_commits(move |tx| {
            let cancel = agenthub::store::tasks::Transition::Cancel;
            agenthub::store::tasks::apply(tx, id, cancel, &Default::default())?;
            Ok(())
        })
        .await;
    let r = app
        .post(
            &format!("/api/daemon/tasks/{}/usage", task.id),
            &task.auth_token,
            json!({"usage": [{"provider": "anthropic", "model": "opus", "input_tokens": 3}]}),
        )
        .await;
    writer.join().unwrap();
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(
        r.error(),
        "task token is no longer valid: its task has ended"
    );
    assert_eq!(app.count("SELECT count(*) FROM task_usage"), 0);
    assert_eq!(app.task_status(&task.id), "cancelled");
}
