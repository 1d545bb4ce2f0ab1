//! Text with NUL characters, in every field a request stores: SQLite's
//! `length()` stops at the first NUL, so such text would break the schema's
//! CHECKs (a 500) or be stored in a form no client means. Each is a 400
//! naming the field, and nothing is written.

mod common;

use common::{spawn_app, TestApp};
use serde_json::{json, Value};

/// Sends the request and checks it is refused for `field` without any
/// change to the database.
async fn refused(app: &TestApp, token: &str, path: &str, body: Value, field: &str) {
    let before = app.dump();
    let r = app
        .request_with_headers("POST", path, Some(token), Some(&body.to_string()), &[])
        .await;
    assert_eq!(r.status, 400, "{path} {body}: {:?}", r.body);
    assert_eq!(
        r.error(),
        format!("{field} must not contain NUL characters")
    );
    assert_eq!(before, app.dump(), "{path} {body} changed the database");
}

#[actix_web::test]
async fn workspace_token_and_daemon_token_text() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let t = &alice.token;
    refused(&app, t, "/api/workspaces", json!({"name": "\0lab"}), "name").await;
    refused(
        &app,
        t,
        "/api/workspaces",
        json!({"name": "lab", "description": "\0"}),
        "description",
    )
    .await;
    refused(&app, t, "/api/tokens", json!({"name": "\0ci"}), "name").await;
    refused(
        &app,
        t,
        &format!("/api/workspaces/{ws}/daemon-tokens"),
        json!({"daemon_id": "\0mbp"}),
        "daemon_id",
    )
    .await;
    refused(
        &app,
        t,
        &format!("/api/workspaces/{ws}/members"),
        json!({"email": "bob@example.com\0"}),
        "email",
    )
    .await;
}

#[actix_web::test]
async fn agent_and_task_text() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let t = &alice.token;
    let rt = app.runtime(t, &ws, "mbp", "claude").await;
    let agents = format!("/api/agents?workspace_id={ws}");
    for field in ["name", "description", "instructions", "avatar_url"] {
        let body = json!({"name": "helper", "runtime_id": rt, field: "\0x"});
        refused(&app, t, &agents, body, field).await;
    }
    let agent = app.agent(t, &ws, &rt, json!({})).await;
    refused(
        &app,
        t,
        &format!("/api/agents/{agent}/tasks"),
        json!({"prompt": "\0fix it"}),
        "prompt",
    )
    .await;
    refused(
        &app,
        t,
        &format!("/api/agents/{agent}/tasks"),
        json!({"prompt": "fix it", "issue_id": "\0"}),
        "issue_id",
    )
    .await;
    refused(
        &app,
        t,
        &agents,
        json!({"name": "helper", "runtime_id": rt, "runtime_config": {"env": {"A": "\0"}}}),
        "runtime_config",
    )
    .await;
    // a daemon's result, in a string or a key
    app.task(t, &agent, "work", 0).await;
    let claimed = app.claim(t, &rt).await;
    let task = claimed.body["task"]["id"].as_str().unwrap().to_string();
    for result in [json!({"summary": "\0"}), json!({"\0": 1})] {
        refused(
            &app,
            t,
            &format!("/api/daemon/tasks/{task}/complete"),
            result,
            "result",
        )
        .await;
    }
    // editing refuses it too
    let before = app.dump();
    let r = app
        .request(
            "PUT",
            &format!("/api/agents/{agent}"),
            Some(t),
            Some(&json!({"name": "\0"}).to_string()),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "name must not contain NUL characters");
    assert_eq!(before, app.dump());
}

#[actix_web::test]
async fn usage_text() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let t = &alice.token;
    let rt = app.runtime(t, &ws, "mbp", "claude").await;
    let agent = app.agent(t, &ws, &rt, json!({})).await;
    let task = app.task(t, &agent, "t", 0).await;
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();

    let before = app.dump();
    let r = app
        .post(
            &format!("/api/daemon/runtimes/{rt}/usage"),
            t,
            json!({"entries": [
                {"date": today, "provider": "\0anthropic", "model": "opus", "input_tokens": 1},
                {"date": today, "provider": "anthropic", "model": "\0", "input_tokens": 1},
            ]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"status": "ok", "accepted": 0, "rejected": [
            {"index": 0, "error": "provider must not contain NUL characters"},
            {"index": 1, "error": "model must not contain NUL characters"},
        ]})
    );
    assert_eq!(before, app.dump());

    refused(
        &app,
        t,
        &format!("/api/daemon/tasks/{task}/usage"),
        json!({"usage": [{"provider": "\0", "model": "opus", "input_tokens": 1}]}),
        "usage[0]: provider",
    )
    .await;
}

#[actix_web::test]
async fn daemon_registration_text() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let t = &alice.token;
    let body = |daemon: &str, device: &str, kind: &str, name: &str| {
        json!({"workspace_id": ws, "daemon_id": daemon, "device_name": device,
               "cli_version": "1", "runtimes": [{"type": kind, "name": name, "version": "1"}]})
    };
    let path = "/api/daemon/register";
    refused(
        &app,
        t,
        path,
        body("\0mbp", "mbp", "claude", ""),
        "daemon_id",
    )
    .await;
    refused(
        &app,
        t,
        path,
        body("mbp", "\0", "claude", ""),
        "device_name",
    )
    .await;
    refused(
        &app,
        t,
        path,
        body("mbp", "mbp", "\0claude", ""),
        "runtimes[0].type",
    )
    .await;
    refused(
        &app,
        t,
        path,
        body("mbp", "mbp", "claude", "\0x"),
        "runtimes[0].name",
    )
    .await;
}
