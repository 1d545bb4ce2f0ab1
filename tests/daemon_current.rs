//! Today's Multica daemon (commit 1cc46b2697) against agenthub: its
//! workspace list, its registration (former daemon ids, launch origin,
//! failed profiles), offline reasons, the heartbeat ack and the
//! `X-Workspace-Slug` header. Replies are decoded into structs that mirror
//! the daemon's Go types field for field (same JSON names; `Option` where
//! Go has `omitempty` or a pointer), so a reply the daemon could not decode
//! fails here.

mod common;

use agenthub::config::SweeperConfig;
use agenthub::domain::Role;
use agenthub::jobs::sweeper::sweep_once;
use common::{spawn_app, Reply, TestApp};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// `WorkspaceInfo` of the daemon's client.go.
#[derive(Debug, Deserialize, PartialEq)]
struct WorkspaceInfo {
    id: String,
    name: String,
}

/// `Runtime` of the daemon's types.go.
#[derive(Debug, Deserialize)]
struct DaemonRuntime {
    id: String,
    name: String,
    provider: String,
    status: String,
    profile_id: Option<String>,
}

/// `RepoData` of types.go.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct RepoData {
    url: String,
    description: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
}

/// `RegisterResponse` of client.go (`settings` is a `json.RawMessage`
/// with omitempty).
#[derive(Debug, Deserialize)]
struct RegisterResponse {
    runtimes: Vec<DaemonRuntime>,
    repos: Vec<RepoData>,
    repos_version: String,
    settings: Option<Value>,
}

/// `DaemonHeartbeatPendingUpdate` of the protocol package.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct PendingUpdate {
    id: String,
    target_version: String,
}

/// The pending requests that carry only an id.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct PendingId {
    id: String,
}

/// `DaemonHeartbeatPendingLocalSkillImport`.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct PendingImport {
    id: String,
    skill_key: String,
}

/// `DaemonHeartbeatAckPayload` (the daemon's `HeartbeatResponse`).
#[derive(Debug, Deserialize)]
struct HeartbeatResponse {
    runtime_id: String,
    status: String,
    server_capabilities: Option<Vec<String>>,
    runtime_gone: Option<bool>,
    pending_update: Option<PendingUpdate>,
    pending_model_list: Option<PendingId>,
    pending_local_skills: Option<PendingId>,
    pending_local_skill_import: Option<PendingImport>,
    pending_local_skill_imports: Option<Vec<PendingImport>>,
}

fn decode<T: DeserializeOwned>(r: &Reply) -> T {
    assert_eq!(r.status, 200, "{:?}", r.body);
    serde_json::from_value(r.body.clone())
        .unwrap_or_else(|e| panic!("the daemon could not decode {}: {e}", r.body))
}

/// A registration body as today's daemon builds it (daemon.go).
fn todays_registration(ws: &str, daemon_id: &str, legacy: &[&str], types: &[&str]) -> Value {
    json!({
        "workspace_id": ws,
        "daemon_id": daemon_id,
        "legacy_daemon_ids": legacy,
        "device_name": "mbp",
        "cli_version": "0.30.1",
        "launched_by": "desktop",
        "runtimes": types
            .iter()
            .map(|t| json!({"name": "", "type": t, "version": "2.1.0", "status": "online"}))
            .collect::<Vec<_>>(),
        "failed_profiles": [],
    })
}

const MACHINE: &str = "5f0c2b8e-4d7a-4c1e-9a39-1b2f6f0e7d11";

async fn register(app: &TestApp, token: &str, body: Value) -> RegisterResponse {
    decode(&app.post("/api/daemon/register", token, body).await)
}

#[actix_web::test]
async fn a_pat_lists_the_callers_workspaces_and_a_daemon_token_its_one() {
    let app = spawn_app().await;
    let (alice, team) = app.init_user("alice@example.com");
    let lab = app
        .post("/api/workspaces", &alice.token, json!({"name": "Lab"}))
        .await;
    assert_eq!(lab.status, 201, "{:?}", lab.body);
    let lab = lab.body["id"].as_str().unwrap().to_string();
    let (_mallory, _) = app.init_user("mallory@example.com");

    let mine: Vec<WorkspaceInfo> = decode(&app.get("/api/daemon/workspaces", &alice.token).await);
    let expected =
        [(team.as_str(), "Team"), (lab.as_str(), "Lab")].map(|(id, name)| WorkspaceInfo {
            id: id.into(),
            name: name.into(),
        });
    assert_eq!(mine, expected);

    let daemon = app.daemon_token(&alice.token, &lab, MACHINE).await;
    let r = app.get("/api/daemon/workspaces", &daemon).await;
    // exactly {id, name}, as the daemon's WorkspaceInfo has it
    assert_eq!(r.body, json!([{"id": lab, "name": "Lab"}]));
    let theirs: Vec<WorkspaceInfo> = decode(&r);
    assert_eq!(theirs.len(), 1);
}

/// GET /api/daemon/workspaces with `If-None-Match`; (status, ETag, body).
async fn workspaces_if(app: &TestApp, token: &str, etag: Option<&str>) -> (u16, String, String) {
    let mut req = app
        .client
        .get(format!("{}/api/daemon/workspaces", app.base))
        .insert_header(("Authorization", format!("Bearer {token}")));
    if let Some(etag) = etag {
        req = req.insert_header(("If-None-Match", etag));
    }
    let mut res = req.send().await.unwrap();
    let etag = res
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert_eq!(
        res.headers().get("cache-control").unwrap(),
        "private, no-cache"
    );
    let body = res.body().await.unwrap();
    (
        res.status().as_u16(),
        etag,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[actix_web::test]
async fn an_unchanged_workspace_list_is_a_304_the_daemon_serves_from_its_cache() {
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    let (status, etag, body) = workspaces_if(&app, &alice.token, None).await;
    assert_eq!(status, 200);
    assert!(etag.starts_with("W/\"") && etag.ends_with('"'), "{etag}");
    assert!(body.contains("Team"));

    let (status, again, body) = workspaces_if(&app, &alice.token, Some(&etag)).await;
    assert_eq!(
        (status, again.as_str(), body.as_str()),
        (304, etag.as_str(), "")
    );

    let r = app
        .post("/api/workspaces", &alice.token, json!({"name": "Lab"}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let (status, changed, body) = workspaces_if(&app, &alice.token, Some(&etag)).await;
    assert_eq!(status, 200);
    assert_ne!(changed, etag);
    assert!(body.contains("Lab"));
}

#[actix_web::test]
async fn todays_registration_is_answered_in_the_shape_the_daemon_decodes() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let body = todays_registration(&ws, MACHINE, &["alice-mbp"], &["claude", "codex"]);
    let reply = register(&app, &alice.token, body).await;
    assert_eq!(reply.runtimes.len(), 2);
    let claude = &reply.runtimes[0];
    assert_eq!(
        (
            claude.name.as_str(),
            claude.provider.as_str(),
            claude.status.as_str()
        ),
        ("claude (mbp)", "claude", "online")
    );
    assert_eq!(claude.profile_id, None);
    assert!(reply.repos.is_empty());
    // a version the daemon stores, and settings that keep its defaults
    assert!(!reply.repos_version.is_empty());
    assert_eq!(reply.settings, Some(json!({})));

    // Go sends its nil slices as null
    let mut bare = todays_registration(&ws, MACHINE, &[], &["claude"]);
    bare["legacy_daemon_ids"] = Value::Null;
    bare["failed_profiles"] = Value::Null;
    assert_eq!(
        register(&app, &alice.token, bare).await.runtimes[0].id,
        claude.id
    );

    let row = app.listed_runtime(&alice.token, &ws, &claude.id).await;
    assert_eq!(
        row["metadata"],
        json!({"version": "2.1.0", "cli_version": "0.30.1", "launched_by": "desktop"})
    );
    assert_eq!(row["offline_reason"], Value::Null);
}

/// An agent on `runtime` that takes three tasks at once.
async fn busy_agent(app: &TestApp, token: &str, ws: &str, runtime: &str) -> String {
    app.agent(token, ws, runtime, json!({"max_concurrent_tasks": 3}))
        .await
}

async fn daemon_call(app: &TestApp, token: &str, task: &str, what: &str, body: Value) {
    let r = app
        .post(&format!("/api/daemon/tasks/{task}/{what}"), token, body)
        .await;
    assert_eq!(r.status, 200, "{what}: {:?}", r.body);
}

/// The tasks of `agent` as people list them: (id, status, runtime_id).
async fn tasks_of(app: &TestApp, token: &str, agent: &str) -> Vec<(String, String, Value)> {
    let r = app.get(&format!("/api/agents/{agent}/tasks"), token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
                t["runtime_id"].clone(),
            )
        })
        .collect()
}

#[actix_web::test]
async fn runtimes_of_former_daemon_ids_fold_into_the_new_row() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let a = alice.token.as_str();
    // the machine under its hostname, as April's daemon registered it
    let r = app
        .register(a, &ws, "Alice-MBP.local", &["claude", "codex"])
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let old = r.body["runtimes"][0]["id"].as_str().unwrap().to_string();
    let old_codex = r.body["runtimes"][1]["id"].as_str().unwrap().to_string();
    let agent = busy_agent(&app, a, &ws, &old).await;
    let done = app.task(a, &agent, "done", 3).await;
    let running = app.task(a, &agent, "running", 2).await;
    let dispatched = app.task(a, &agent, "dispatched", 1).await;
    let queued = app.task(a, &agent, "queued", 0).await;
    for task in [&done, &running, &dispatched] {
        let claimed = app.claim(a, &old).await;
        assert_eq!(claimed.body["task"]["id"], task.as_str());
    }
    daemon_call(&app, a, &done, "start", json!({})).await;
    daemon_call(&app, a, &done, "complete", json!({"output": "ok"})).await;
    daemon_call(&app, a, &running, "start", json!({})).await;
    let day = (chrono::Utc::now() - chrono::Duration::days(10))
        .format("%Y-%m-%d")
        .to_string();
    let usage = json!({"entries": [{"date": day, "provider": "anthropic",
                                    "model": "sonnet", "input_tokens": 7}]});
    let r = app
        .post(&format!("/api/daemon/runtimes/{old}/usage"), a, usage)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // today's daemon: a UUID, naming the hostname forms it used (any case)
    let body = todays_registration(&ws, MACHINE, &["alice-mbp", "alice-mbp.local"], &["claude"]);
    let reply = register(&app, a, body).await;
    let new = reply.runtimes[0].id.clone();
    assert_ne!(new, old);

    let ids: Vec<String> = app
        .listed_runtimes(a, &ws)
        .await
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!ids.contains(&old), "the old row is gone: {ids:?}");
    // only the providers the daemon registered fold
    assert!(ids.contains(&old_codex) && ids.contains(&new));
    assert_eq!(app.agent_runtime(&agent), new);
    let tasks = tasks_of(&app, a, &agent).await;
    let find = |id: &str| tasks.iter().find(|t| t.0 == id).unwrap().clone();
    assert_eq!(find(&running).1, "running");
    assert_eq!(find(&running).2, json!(new));
    assert_eq!(find(&dispatched).2, json!(new));
    // history stays, with no runtime
    assert_eq!(
        (find(&done).1.as_str(), &find(&done).2),
        ("completed", &Value::Null)
    );
    assert_eq!(find(&queued).1, "queued");

    // the daemon carries on with the same work on its new row
    let r = app
        .post(
            &format!("/api/daemon/tasks/{running}/complete"),
            a,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let claimed = app.claim(a, &new).await;
    assert_eq!(claimed.body["task"]["id"], queued.as_str());
    let r = app
        .get(&format!("/api/runtimes/{new}/usage?days=30"), a)
        .await;
    assert_eq!(r.body[0]["input_tokens"], 7, "{:?}", r.body);
}

#[actix_web::test]
async fn former_daemon_ids_of_someone_else_are_left_alone() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let bobs = app.runtime(&bob.token, &ws, "shared-host", "claude").await;
    app.share_runtime(&bob.token, &bobs).await;
    let agent = app.agent(&alice.token, &ws, &bobs, json!({})).await;

    let body = todays_registration(&ws, MACHINE, &["shared-host"], &["claude"]);
    let reply = register(&app, &alice.token, body).await;
    assert_eq!(reply.runtimes.len(), 1);
    let row = app.listed_runtime(&bob.token, &ws, &bobs).await;
    assert_eq!(row["owner_id"], bob.id.as_str());
    assert_eq!(app.agent_runtime(&agent), bobs);
}

#[actix_web::test]
async fn a_daemon_token_folds_no_other_daemon_ids() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let old = app.runtime(&alice.token, &ws, "alice-mbp", "claude").await;
    // a daemon token reaches the runtimes of its own daemon_id only
    let daemon = app.daemon_token(&alice.token, &ws, MACHINE).await;
    let body = todays_registration(&ws, MACHINE, &["alice-mbp"], &["claude"]);
    let reply = register(&app, &daemon, body).await;
    assert_eq!(reply.runtimes.len(), 1);
    let ids: Vec<Value> = app
        .listed_runtimes(&alice.token, &ws)
        .await
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert!(ids.contains(&json!(old)), "{ids:?}");
}

#[actix_web::test]
async fn former_daemon_ids_are_bounded_and_checked() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let before = app.dump();
    let many: Vec<String> = (0..33).map(|i| format!("host-{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let long = "h".repeat(256);
    for (legacy, message) in [
        (many, "legacy_daemon_ids carries at most 32 ids"),
        (
            vec!["ok", long.as_str()],
            "legacy_daemon_ids[1] is too long (at most 255 bytes)",
        ),
    ] {
        let body = todays_registration(&ws, MACHINE, &legacy, &["claude"]);
        let r = app.post("/api/daemon/register", &alice.token, body).await;
        assert_eq!((r.status, r.error()), (400, message));
    }
    assert_eq!(before, app.dump());
}

#[actix_web::test]
async fn failed_profiles_are_offline_runtimes_with_their_reason() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let profile = "0d8d6f1e-3b0f-4a57-8a55-0f5b0a3f9c10";
    let mut body = todays_registration(&ws, MACHINE, &[], &[]);
    body["failed_profiles"] = json!([{"profile_id": profile, "command_name": "ccms",
                                      "reason": "command not found on PATH: ccms"}]);
    // nothing the daemon could run: no runtime for it to heartbeat
    let reply = register(&app, &alice.token, body.clone()).await;
    assert!(reply.runtimes.is_empty());
    let rows = app.listed_runtimes(&alice.token, &ws).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["name"], "ccms (mbp)");
    assert_eq!(rows[0]["status"], "offline");
    assert_eq!(rows[0]["daemon_id"], MACHINE);
    assert_eq!(
        rows[0]["offline_reason"],
        json!({"code": "profile_failed", "detail": "command not found on PATH: ccms"})
    );
    assert_eq!(rows[0]["metadata"]["profile_id"], profile);
    // reported again, it stays one row
    register(&app, &alice.token, body.clone()).await;
    assert_eq!(app.listed_runtimes(&alice.token, &ws).await.len(), 1);

    let before = app.dump();
    body["failed_profiles"][0]["profile_id"] = json!("ccms");
    let r = app.post("/api/daemon/register", &alice.token, body).await;
    assert_eq!(r.status, 400);
    assert!(
        r.error()
            .starts_with("invalid failed_profiles[0].profile_id:"),
        "{}",
        r.error()
    );
    assert_eq!(before, app.dump());
}

async fn deregister(app: &TestApp, token: &str, body: Value) -> Reply {
    app.post("/api/daemon/deregister", token, body).await
}

#[actix_web::test]
async fn a_runtime_shows_why_the_daemon_took_it_offline_until_it_returns() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let a = alice.token.as_str();
    let reply = register(
        &app,
        a,
        todays_registration(&ws, MACHINE, &[], &["claude", "codex"]),
    )
    .await;
    let (claude, codex) = (reply.runtimes[0].id.clone(), reply.runtimes[1].id.clone());
    let reason = json!({"code": "not_executable", "detail": "exec format error",
                        "repair": {"package": "@openai/codex", "command": "npm rebuild @openai/codex", "shell": "bash"}});
    let r = deregister(
        &app,
        a,
        json!({"runtime_ids": [claude, codex], "offline_reasons": {&codex: reason}}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let row = app.listed_runtime(a, &ws, &codex).await;
    assert_eq!(
        (row["status"].clone(), row["offline_reason"].clone()),
        (json!("offline"), reason)
    );
    // a daemon shutting down gives no reason
    let row = app.listed_runtime(a, &ws, &claude).await;
    assert_eq!(row["offline_reason"], json!({"code": "deregistered"}));

    let beat = app
        .post("/api/daemon/heartbeat", a, json!({"runtime_id": codex}))
        .await;
    assert_eq!(beat.status, 200);
    let row = app.listed_runtime(a, &ws, &codex).await;
    assert_eq!(
        (row["status"].clone(), row["offline_reason"].clone()),
        (json!("online"), Value::Null)
    );
    register(&app, a, todays_registration(&ws, MACHINE, &[], &["claude"])).await;
    assert_eq!(
        app.listed_runtime(a, &ws, &claude).await["offline_reason"],
        Value::Null
    );
}

#[actix_web::test]
async fn bad_offline_reasons_are_refused_whole() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, MACHINE, "claude").await;
    let before = app.dump();
    for (reasons, message) in [
        (
            json!({&rt: {"detail": "x"}}),
            format!("offline_reasons[\"{rt}\"].code is required"),
        ),
        (
            json!({"codex": {"code": "x"}}),
            "invalid offline_reasons[\"codex\"]: \"codex\" is not a UUID".to_string(),
        ),
    ] {
        let r = deregister(
            &app,
            &alice.token,
            json!({"runtime_ids": [rt], "offline_reasons": reasons}),
        )
        .await;
        assert_eq!((r.status, r.error()), (400, message.as_str()));
    }
    let r = deregister(
        &app,
        &alice.token,
        json!({"runtime_ids": [rt], "offline_reasons": {&rt: "broken"}}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(before, app.dump());
}

#[actix_web::test]
async fn another_members_runtime_keeps_its_reason() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let bobs = app.runtime(&bob.token, &ws, "bob-mbp", "claude").await;
    let before = app.dump();
    let r = deregister(
        &app,
        &alice.token,
        json!({"runtime_ids": [bobs], "offline_reasons": {&bobs: {"code": "not_executable"}}}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(before, app.dump());
}

#[actix_web::test]
async fn the_server_says_why_it_took_runtimes_offline() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let quiet = app.runtime(&alice.token, &ws, "quiet", "claude").await;
    let bobs = app.runtime(&bob.token, &ws, "bob-mbp", "claude").await;
    app.age_runtime(&quiet, 3600);
    let config = SweeperConfig {
        interval_secs: 3600,
        stale_after_secs: 60,
        offline_runtime_ttl_secs: 86_400,
        dispatch_timeout_secs: 300,
        running_timeout_secs: 9000,
        reconnect_grace_secs: 10_800,
        queued_ttl_secs: 7200,
    };
    assert_eq!(sweep_once(&app.state, &config).stale_runtimes, 1);
    let row = app.listed_runtime(&alice.token, &ws, &quiet).await;
    assert_eq!(row["offline_reason"], json!({"code": "stale"}));

    app.remove_member(&alice.token, &ws, &bob.id).await;
    let row = app.listed_runtime(&alice.token, &ws, &bobs).await;
    assert_eq!(row["status"], "offline");
    assert_eq!(row["offline_reason"], json!({"code": "member_removed"}));
}

#[actix_web::test]
async fn the_heartbeat_ack_names_the_runtime_and_what_the_server_serves() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, MACHINE, "claude").await;
    let update = app
        .post(
            &format!("/api/runtimes/{rt}/update"),
            &alice.token,
            json!({"target_version": "0.31.0"}),
        )
        .await;
    assert_eq!(update.status, 200, "{:?}", update.body);
    let beat = json!({"runtime_id": rt, "supports_batch_import": true});
    let ack: HeartbeatResponse = decode(
        &app.post("/api/daemon/heartbeat", &alice.token, beat.clone())
            .await,
    );
    assert_eq!(
        (ack.runtime_id.as_str(), ack.status.as_str()),
        (rt.as_str(), "ok")
    );
    let capabilities = ack.server_capabilities.unwrap();
    for name in ["batch-claim-v1", "daemon-workspaces-v1", "task-tokens-v1"] {
        assert!(capabilities.iter().any(|c| c == name), "{capabilities:?}");
    }
    // the daemon claims over its WebSocket once it reads this in the
    // socket's ack (tests/daemon_ws.rs)
    assert!(capabilities.iter().any(|c| c == "rpc-v1"));
    assert_eq!(ack.runtime_gone, None);
    assert_eq!(ack.pending_update.unwrap().target_version, "0.31.0");
    assert!(ack.pending_model_list.is_none() && ack.pending_local_skills.is_none());
    assert!(ack.pending_local_skill_import.is_none() && ack.pending_local_skill_imports.is_none());

    // a deleted runtime: the 404 the daemon re-registers on
    let r = app
        .delete(&format!("/api/runtimes/{rt}"), &alice.token)
        .await;
    assert_eq!(r.status, 200);
    let r = app.post("/api/daemon/heartbeat", &alice.token, beat).await;
    assert_eq!(r.status, 404);
    assert!(r
        .body
        .to_string()
        .to_lowercase()
        .contains("runtime not found"));
}

/// `GET /api/runtimes` with the given workspace headers.
async fn runtimes_with(app: &TestApp, token: &str, headers: &[(&str, &str)]) -> Reply {
    app.request_with_headers("GET", "/api/runtimes", Some(token), None, headers)
        .await
}

#[actix_web::test]
async fn x_workspace_slug_names_the_workspace_like_x_workspace_id() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let (mallory, _) = app.init_user("mallory@example.com");
    let rt = app.runtime(&alice.token, &ws, MACHINE, "claude").await;
    let slug = app
        .get(&format!("/api/workspaces/{ws}"), &alice.token)
        .await
        .body["slug"]
        .as_str()
        .unwrap()
        .to_string();
    let other_slug = app.get("/api/workspaces", &mallory.token).await.body[0]["slug"]
        .as_str()
        .unwrap()
        .to_string();

    let r = runtimes_with(&app, &alice.token, &[("X-Workspace-Slug", &slug)]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body[0]["id"], rt.as_str());
    let both = [
        ("X-Workspace-Slug", slug.as_str()),
        ("X-Workspace-ID", ws.as_str()),
    ];
    assert_eq!(runtimes_with(&app, &alice.token, &both).await.status, 200);

    for slug in ["no-such-workspace", other_slug.as_str()] {
        let r = runtimes_with(&app, &alice.token, &[("X-Workspace-Slug", slug)]).await;
        assert_eq!(
            (r.status, r.error()),
            (404, "workspace not found"),
            "{slug}"
        );
    }
    let lab = app
        .post("/api/workspaces", &alice.token, json!({"name": "Lab"}))
        .await;
    assert_eq!(lab.status, 201, "{:?}", lab.body);
    let elsewhere = lab.body["id"].as_str().unwrap().to_string();
    let clash = [
        ("X-Workspace-Slug", slug.as_str()),
        ("X-Workspace-ID", elsewhere.as_str()),
    ];
    let r = runtimes_with(&app, &alice.token, &clash).await;
    assert_eq!(
        (r.status, r.error()),
        (
            400,
            "X-Workspace-ID and X-Workspace-Slug name different workspaces"
        )
    );
}

#[actix_web::test]
async fn a_folded_runtimes_task_usage_comes_along() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let old = app.runtime(&alice.token, &ws, "alice-mbp", "claude").await;
    let agent = app.agent(&alice.token, &ws, &old, json!({})).await;
    let task = app.task(&alice.token, &agent, "x", 0).await;
    assert_eq!(app.claim(&alice.token, &old).await.status, 200);
    for (what, body) in [
        ("start", json!({})),
        (
            "usage",
            json!({"usage": [{"provider": "anthropic", "model": "opus", "input_tokens": 700}]}),
        ),
    ] {
        let r = app
            .post(
                &format!("/api/daemon/tasks/{task}/{what}"),
                &alice.token,
                body,
            )
            .await;
        assert_eq!(r.status, 200, "{what}: {:?}", r.body);
    }
    let new = register(
        &app,
        &alice.token,
        todays_registration(
            &ws,
            "6f1d2c3b-0000-4000-8000-000000000001",
            &["alice-mbp"],
            &["claude"],
        ),
    )
    .await;
    let new = &new.runtimes[0].id;
    let usage = app
        .get(&format!("/api/runtimes/{new}/usage?days=7"), &alice.token)
        .await;
    assert_eq!(usage.status, 200);
    assert_eq!(usage.body[0]["input_tokens"], 700, "{}", usage.body);
    // the workspace's usage by runtime names the new row only, in any zone
    for tz in ["", "&tz=America/Los_Angeles"] {
        let r = app
            .get(
                &format!("/api/dashboard/usage/by-runtime?workspace_id={ws}{tz}"),
                &alice.token,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let runtimes: Vec<(&str, i64)> = r
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row["runtime_id"].as_str().unwrap(),
                    row["input_tokens"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(runtimes, [(new.as_str(), 700)], "{tz}");
    }
}

#[actix_web::test]
async fn a_deregistration_names_a_bounded_number_of_runtimes() {
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    let ids: Vec<String> = (0..101)
        .map(|_| agenthub::domain::RuntimeId::new().to_string())
        .collect();
    let r = deregister(&app, &alice.token, json!({"runtime_ids": ids})).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "a deregistration names at most 100 runtimes")
    );
}
