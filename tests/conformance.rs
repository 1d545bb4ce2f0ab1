//! Conformance with the current Multica daemon (commit 1cc46b2697): the
//! sequence of calls it makes, replayed over real HTTP with a PAT and with a
//! daemon token, each reply decoded into structs that mirror the daemon's
//! Go types (a Go `string` takes a string or null, an `int64` a number, a
//! `time.Time` an RFC 3339 string or null; unknown fields are ignored, as
//! Go's decoder does). The April daemon's sequence keeps its own tests
//! (tests/daemon.rs, tests/tasks.rs).

mod common;

use common::ws::open;
use common::{spawn_app, TestApp};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

/// A Go `string` field: a JSON string, or null (which Go leaves as "").
fn go_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// A Go `time.Time` field: RFC 3339, or null (the zero time).
fn go_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw = Option::<String>::deserialize(d)?;
    if let Some(t) = &raw {
        chrono::DateTime::parse_from_rfc3339(t).map_err(serde::de::Error::custom)?;
    }
    Ok(raw)
}

#[derive(Debug, Deserialize)]
struct RenewTokenResponse {
    #[serde(deserialize_with = "go_string")]
    expires_at: String,
    renewed: bool,
}

#[derive(Debug, Deserialize)]
struct WorkspaceInfo {
    #[serde(deserialize_with = "go_string")]
    id: String,
    #[serde(deserialize_with = "go_string")]
    name: String,
}

#[derive(Debug, Deserialize)]
struct Runtime {
    #[serde(deserialize_with = "go_string")]
    id: String,
    #[serde(deserialize_with = "go_string")]
    name: String,
    #[serde(deserialize_with = "go_string")]
    provider: String,
    #[serde(deserialize_with = "go_string")]
    status: String,
    #[serde(default, deserialize_with = "go_string")]
    profile_id: String,
}

#[derive(Debug, Deserialize)]
struct RegisterResponse {
    runtimes: Vec<Runtime>,
    repos: Vec<Value>,
    #[serde(deserialize_with = "go_string")]
    repos_version: String,
    settings: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct HeartbeatAck {
    #[serde(deserialize_with = "go_string")]
    runtime_id: String,
    #[serde(deserialize_with = "go_string")]
    status: String,
    #[serde(default)]
    server_capabilities: Vec<String>,
    #[serde(default)]
    runtime_gone: bool,
}

#[derive(Debug, Deserialize)]
struct AgentData {
    #[serde(deserialize_with = "go_string")]
    id: String,
    #[serde(deserialize_with = "go_string")]
    name: String,
    #[serde(deserialize_with = "go_string")]
    instructions: String,
}

#[derive(Debug, Deserialize)]
struct Task {
    #[serde(deserialize_with = "go_string")]
    id: String,
    #[serde(deserialize_with = "go_string")]
    agent_id: String,
    #[serde(deserialize_with = "go_string")]
    runtime_id: String,
    #[serde(deserialize_with = "go_string")]
    issue_id: String,
    #[serde(deserialize_with = "go_string")]
    workspace_id: String,
    agent: Option<AgentData>,
    #[serde(default, deserialize_with = "go_string")]
    auth_token: String,
}

#[derive(Debug, Deserialize)]
struct BatchClaim {
    tasks: Vec<Task>,
}

#[derive(Debug, Deserialize)]
struct TaskStatus {
    #[serde(deserialize_with = "go_string")]
    status: String,
}

#[derive(Debug, Deserialize)]
struct TaskGCStatus {
    #[serde(deserialize_with = "go_string")]
    status: String,
    #[serde(deserialize_with = "go_time")]
    completed_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IssueGCStatus {
    #[serde(deserialize_with = "go_string")]
    status: String,
    #[serde(deserialize_with = "go_time")]
    updated_at: Option<String>,
}

/// Sends a request as the daemon does and decodes a 2xx reply as `T`.
async fn call<T: serde::de::DeserializeOwned>(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> T {
    let body = body.map(|b| b.to_string());
    let r = app
        .request_with_headers(
            method,
            path,
            Some(token),
            body.as_deref(),
            &[("X-Client-Version", "0.9.0")],
        )
        .await;
    assert!(
        (200..300).contains(&r.status),
        "{method} {path}: {} {}",
        r.status,
        r.body
    );
    serde_json::from_value(r.body.clone()).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: the daemon could not decode {}: {e}",
            r.body
        )
    })
}

async fn post<T: serde::de::DeserializeOwned>(
    app: &TestApp,
    path: &str,
    token: &str,
    body: Value,
) -> T {
    call(app, "POST", path, token, Some(body)).await
}

async fn get<T: serde::de::DeserializeOwned>(app: &TestApp, path: &str, token: &str) -> T {
    call(app, "GET", path, token, None).await
}

/// Which credential the daemon was started with.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Login {
    Pat,
    DaemonToken,
}

/// What the daemon does from start to shutdown, with `login`.
async fn replay(login: Login) {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let daemon_id = "6f1d2c3b-9a8e-4f7d-8c6b-5a4e3d2c1b0a";
    // the same machine under the April daemon: a hostname id, an agent
    // bound to it and work queued for it
    let old = app.runtime(&alice.token, &ws, "alice-mbp", "claude").await;
    let old_agent = app
        .agent(&alice.token, &ws, &old, json!({"name": "fixer"}))
        .await;
    let waiting = app
        .task(&alice.token, &old_agent, "queued before the upgrade", 0)
        .await;
    let deregistered: Value = post(
        &app,
        "/api/daemon/deregister",
        &alice.token,
        json!({"runtime_ids": [old]}),
    )
    .await;
    assert_eq!(deregistered["status"], "ok");
    let token = match login {
        Login::Pat => alice.token.clone(),
        Login::DaemonToken => app.daemon_token(&alice.token, &ws, daemon_id).await,
    };

    // start: renew the credential, list workspaces, register, recover
    let renewed: RenewTokenResponse =
        post(&app, "/api/tokens/current/renew", &token, json!({})).await;
    assert!(
        !renewed.renewed,
        "a fresh token is not renewed: {renewed:?}"
    );
    if login == Login::DaemonToken {
        chrono::DateTime::parse_from_rfc3339(&renewed.expires_at).expect("expires_at");
    }
    let workspaces: Vec<WorkspaceInfo> = get(&app, "/api/daemon/workspaces", &token).await;
    assert_eq!(
        workspaces
            .iter()
            .map(|w| (w.id.as_str(), w.name.as_str()))
            .collect::<Vec<_>>(),
        [(ws.as_str(), "Team")]
    );
    let registered: RegisterResponse = post(&app, "/api/daemon/register", &token, json!({
            "workspace_id": ws, "daemon_id": daemon_id, "legacy_daemon_ids": ["alice-mbp", "Alice-MBP.local"],
            "device_name": "mbp", "cli_version": "0.9.0", "launched_by": "desktop",
            "runtimes": [{"name": "Claude (mbp)", "type": "claude", "version": "2.1.0", "status": "online"}],
            "failed_profiles": [],
        })).await;
    assert_eq!(registered.runtimes.len(), 1);
    let rt = &registered.runtimes[0];
    assert_eq!(
        (
            rt.name.as_str(),
            rt.provider.as_str(),
            rt.status.as_str(),
            rt.profile_id.as_str()
        ),
        ("Claude (mbp)", "claude", "online", "")
    );
    assert!(registered.repos.is_empty());
    assert!(!registered.repos_version.is_empty());
    assert!(registered.settings.is_some_and(|s| s.is_object()));
    let runtime = rt.id.clone();
    let agent = match login {
        // a PAT folds the old hostname row into the new one: its agent and
        // queued work come along
        Login::Pat => {
            assert_eq!(app.agent_runtime(&old_agent), runtime);
            assert_eq!(
                app.count(&format!(
                    "SELECT count(*) FROM agent_runtime WHERE id = '{old}'"
                )),
                0
            );
            old_agent.clone()
        }
        // a daemon token reaches its own daemon_id only: the old row stays
        Login::DaemonToken => {
            let r = app
                .post(
                    &format!("/api/tasks/{waiting}/cancel"),
                    &alice.token,
                    json!({}),
                )
                .await;
            assert_eq!(r.status, 200);
            app.agent(&alice.token, &ws, &runtime, json!({"name": "fixer"}))
                .await
        }
    };
    let recovered: Value = post(
        &app,
        &format!("/api/daemon/runtimes/{runtime}/recover-orphans"),
        &token,
        json!({}),
    )
    .await;
    assert_eq!(recovered["orphaned"], 0);
    let ack: HeartbeatAck = post(
        &app,
        "/api/daemon/heartbeat",
        &token,
        json!({"runtime_id": runtime}),
    )
    .await;
    assert_eq!(
        (
            ack.runtime_id.as_str(),
            ack.status.as_str(),
            ack.runtime_gone
        ),
        (runtime.as_str(), "ok", false)
    );
    assert!(
        ack.server_capabilities
            .iter()
            .any(|c| c == "batch-claim-v1"),
        "{:?}",
        ack.server_capabilities
    );
    // the control socket beside the HTTP calls; its ack's rpc-v1 makes the
    // daemon claim over it
    let mut socket = open(&app, Some(&token), &[&runtime])
        .await
        .expect("daemon socket");
    socket
        .send("daemon:heartbeat", json!({"runtime_id": runtime}))
        .await;
    let ack: HeartbeatAck =
        serde_json::from_value(socket.next("daemon:heartbeat_ack").await).expect("ack");
    assert_eq!(
        (ack.runtime_id.as_str(), ack.status.as_str()),
        (runtime.as_str(), "ok")
    );
    assert!(
        ack.server_capabilities.iter().any(|c| c == "rpc-v1"),
        "{:?}",
        ack.server_capabilities
    );

    // work arrives; the daemon claims a batch for the machine
    let issue = "ISSUE-42";
    let first = app
        .post(
            &format!("/api/agents/{agent}/tasks"),
            &alice.token,
            json!({"prompt": "fix the build", "priority": 5, "issue_id": issue}),
        )
        .await;
    assert_eq!(first.status, 201);
    let first = first.body["id"].as_str().unwrap().to_string();
    let woken = socket.next("daemon:task_available").await;
    assert_eq!(
        (woken["runtime_id"].as_str(), woken["task_id"].as_str()),
        (Some(runtime.as_str()), Some(first.as_str()))
    );
    // it claims over the socket...
    let rpc = socket
        .claim(
            "claim-1",
            json!({"daemon_id": daemon_id, "runtime_ids": [runtime], "max_tasks": 1}),
        )
        .await;
    assert_eq!(rpc.status, 200, "{}", rpc.error);
    let over_socket: BatchClaim =
        serde_json::from_value(rpc.body.expect("rpc body")).expect("the daemon decodes the claim");
    assert_eq!(over_socket.tasks.len(), 1);
    assert_eq!(over_socket.tasks[0].id, first);
    // ...and over HTTP when the socket is down
    let second = app.task(&alice.token, &agent, "then the docs", 1).await;
    let claimed: BatchClaim = post(
        &app,
        "/api/daemon/tasks/claim",
        &token,
        json!({"daemon_id": daemon_id, "runtime_ids": [runtime], "max_tasks": 4}),
    )
    .await;
    let mut expected = vec![second.clone()];
    if login == Login::Pat {
        expected.push(waiting.clone());
    }
    let ids: Vec<&str> = claimed.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, expected.iter().map(String::as_str).collect::<Vec<_>>());
    let claimed: Vec<&Task> = over_socket.tasks.iter().chain(&claimed.tasks).collect();
    for task in &claimed {
        assert_eq!(
            (
                task.runtime_id.as_str(),
                task.agent_id.as_str(),
                task.workspace_id.as_str()
            ),
            (runtime.as_str(), agent.as_str(), ws.as_str())
        );
        assert!(
            task.auth_token.starts_with("mat_") && task.auth_token.len() == 44,
            "{}",
            task.auth_token
        );
        assert_ne!(
            task.auth_token, token,
            "the daemon's credential is never echoed"
        );
        let data = task.agent.as_ref().expect("agent");
        assert_eq!(
            (
                data.id.as_str(),
                data.name.as_str(),
                data.instructions.as_str()
            ),
            (agent.as_str(), "fixer", "")
        );
    }
    assert_eq!(claimed[0].issue_id, issue);
    let agent_token = claimed[0].auth_token.clone();

    // the first task runs: lease while preparing, start, stream, usage,
    // session pin, complete
    let t = format!("/api/daemon/tasks/{first}");
    let _: Value = post(
        &app,
        &format!("/api/daemon/runtimes/{runtime}/tasks/{first}/prepare-lease"),
        &token,
        json!({}),
    )
    .await;
    let _: Value = post(&app, &format!("{t}/start"), &token, json!({})).await;
    // the agent itself reads its task and reports with its own token
    let status: TaskStatus = get(&app, &format!("{t}/status"), &agent_token).await;
    assert_eq!(status.status, "running");
    let _: Value = post(
        &app,
        &format!("{t}/progress"),
        &token,
        json!({"summary": "building", "step": 1, "total": 3}),
    )
    .await;
    let _: Value = post(
        &app,
        &format!("{t}/messages"),
        &token,
        json!({"messages": [{"seq": 1, "type": "text", "content": "looking at the failure"}]}),
    )
    .await;
    let _: Value = post(&app, &format!("{t}/usage"), &token, json!({"usage": [{"provider": "anthropic", "model": "claude-sonnet", "input_tokens": 1200, "output_tokens": 300,
                               "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_usd_ticks": 4_500_000_000i64}]})).await;
    let pinned = app
        .post(
            &format!("{t}/session"),
            &token,
            json!({"session_id": "sess-1", "work_dir": "/tmp/multica/w1"}),
        )
        .await;
    assert!((200..300).contains(&pinned.status), "{:?}", pinned.body);
    let _: Value = post(&app, &format!("{t}/complete"), &token, json!({"output": "fixed", "branch_name": "fix-build", "session_id": "sess-1", "work_dir": "/tmp/multica/w1"})).await;
    // a last message flush racing the completion is not lost
    let _: Value = post(
        &app,
        &format!("{t}/messages"),
        &token,
        json!({"messages": []}),
    )
    .await;
    assert_eq!(
        app.get(&format!("{t}/status"), &agent_token).await.status,
        401,
        "the agent's token ended with its task"
    );

    // the second is cancelled by its person; the daemon notices and acks
    let r = app
        .post(
            &format!("/api/tasks/{second}/cancel"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    let status: TaskStatus = get(&app, &format!("/api/daemon/tasks/{second}/status"), &token).await;
    assert_eq!(status.status, "cancelled");
    let _: Value = post(
        &app,
        &format!("/api/daemon/tasks/{second}/cancel-ack"),
        &token,
        json!({"branch_name": "", "durable_work_dir": "/tmp/multica/w2"}),
    )
    .await;

    // clean-up checks for work directories
    let gc: TaskGCStatus = get(&app, &format!("{t}/gc-check"), &token).await;
    assert_eq!(gc.status, "completed");
    assert!(gc.completed_at.is_some());
    let issue_gc: IssueGCStatus = get(
        &app,
        &format!("/api/daemon/issues/{issue}/gc-check"),
        &token,
    )
    .await;
    assert_eq!(issue_gc.status, "done");
    assert!(issue_gc.updated_at.is_some());

    // what it cost, from the task's usage
    let usage = app
        .get(
            &format!("/api/runtimes/{runtime}/usage?days=7"),
            &alice.token,
        )
        .await;
    assert_eq!(usage.status, 200);
    assert_eq!(usage.body[0]["input_tokens"], 1200);
    assert_eq!(usage.body[0]["cost_usd_ticks"], 4_500_000_000i64);

    // shutdown
    let _: Value = post(&app, "/api/daemon/deregister", &token, json!({"runtime_ids": [runtime], "offline_reasons": {runtime.clone(): {"code": "not_executable", "detail": "exec format error"}}})).await;
    let row = app.listed_runtime(&alice.token, &ws, &runtime).await;
    assert_eq!(row["status"], "offline");
    assert_eq!(row["offline_reason"]["code"], "not_executable");
}

#[actix_web::test]
async fn todays_daemon_runs_its_tasks_with_a_personal_access_token() {
    replay(Login::Pat).await;
}

#[actix_web::test]
async fn todays_daemon_runs_its_tasks_with_a_daemon_token() {
    replay(Login::DaemonToken).await;
}
