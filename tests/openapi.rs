//! `/api/openapi.json` documents exactly the routes the handlers register,
//! and what they read and answer: real requests and replies are checked
//! against the documented schemas.

mod common;

use std::collections::BTreeSet;

use common::{spawn_app, TestApp};
use serde_json::{json, Value};

/// (method, path) of every `.route("<path>", web::<method>()` in src/api.
fn registered_routes() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue; // src/api/openapi/ holds schemas, no routes
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let mut rest = source.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = rest[at + ".route(".len()..].trim_start();
            let Some(quoted) = rest.strip_prefix('"') else {
                continue;
            };
            let end = quoted.find('"').unwrap();
            let route_path = &quoted[..end];
            let after = quoted[end + 1..]
                .trim_start()
                .trim_start_matches(',')
                .trim_start();
            let method: String = after
                .strip_prefix("web::")
                .unwrap_or_else(|| {
                    panic!(
                        "{}: route {route_path} without web::<method>",
                        path.display()
                    )
                })
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            // routes of src/api/mod.rs sit at the root, the others under /api
            let full = if path.ends_with("mod.rs") {
                route_path.to_string()
            } else {
                format!("/api{route_path}")
            };
            routes.insert((method, full));
            rest = after;
        }
    }
    routes
}

#[actix_web::test]
async fn openapi_document_lists_every_route_and_nothing_else() {
    let app = spawn_app().await;
    let r = app.request("GET", "/api/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, ops) in r.body["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let registered = registered_routes();
    assert!(registered.len() > 40, "found {} routes", registered.len());
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    assert!(
        stale.is_empty(),
        "openapi.json lists routes that do not exist: {stale:?}"
    );
}

/// A schema of the document, compiled with the document's components so
/// its `$ref`s resolve; formats (uuid, date-time, date) are checked too.
fn compile(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema {schema} does not compile: {e}"))
}

fn assert_valid(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let errors: Vec<String> = compile(doc, schema)
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}\n{instance:#}");
}

/// The documented path template that `path` (query left out) is an
/// instance of.
fn template_of(doc: &Value, method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap();
    let segments: Vec<&str> = path.split('/').collect();
    let matches: Vec<&String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, ops)| ops.get(method).is_some())
        .map(|(template, _)| template)
        .filter(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t == s || t.starts_with('{'))
        })
        .collect();
    assert_eq!(matches.len(), 1, "{method} {path} matches {matches:?}");
    matches[0].clone()
}

/// Makes real requests and checks each against the document: the body
/// sent fits the documented request schema, the reply has the documented
/// success status and fits the documented reply schema.
struct Checker<'a> {
    app: &'a TestApp,
    doc: Value,
}

impl Checker<'_> {
    async fn new(app: &TestApp) -> Checker<'_> {
        let doc = app.request("GET", "/api/openapi.json", None, None).await;
        assert_eq!(doc.status, 200);
        Checker { app, doc: doc.body }
    }

    async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
        let template = template_of(&self.doc, method, path);
        let op = &self.doc["paths"][&template][method];
        if let Some(body) = &body {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            assert!(schema.is_object(), "{method} {template} documents no body");
            assert_valid(
                &self.doc,
                schema,
                body,
                &format!("request of {method} {path}"),
            );
        }
        let (status, reply) = op["responses"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(status, _)| status.starts_with('2'))
            .unwrap_or_else(|| panic!("{method} {template} documents no success"));
        let body = body.map(|b| b.to_string());
        let r = self
            .app
            .request(&method.to_uppercase(), path, Some(token), body.as_deref())
            .await;
        assert_eq!(
            r.status.to_string(),
            *status,
            "{method} {path}: {:?}",
            r.body
        );
        // an empty list would fit any item schema
        assert!(
            r.body.as_array().is_none_or(|a| !a.is_empty()),
            "{method} {path}: check a list with something in it"
        );
        if reply.get("content").is_none() {
            assert_eq!(
                r.body,
                Value::Null,
                "{method} {path}: a body where none is documented"
            );
            return r.body;
        }
        let schema = &reply["content"]["application/json"]["schema"];
        assert_valid(
            &self.doc,
            schema,
            &r.body,
            &format!("reply of {method} {path}"),
        );
        r.body
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        self.call("get", path, token, None).await
    }

    async fn post(&self, path: &str, token: &str, body: Option<Value>) -> Value {
        self.call("post", path, token, body).await
    }

    async fn delete(&self, path: &str, token: &str) -> Value {
        self.call("delete", path, token, None).await
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[actix_web::test]
async fn every_body_and_reply_is_described() {
    let app = spawn_app().await;
    let doc = Checker::new(&app).await.doc;
    let components = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "Runtime",
        "Agent",
        "Task",
        "Workspace",
        "Member",
        "Token",
        "RuntimeUsage",
        "DailyUsage",
        "UsageSummary",
        "Ping",
        "Update",
        "Invitation",
        "Error",
    ] {
        assert!(components.contains_key(name), "no component {name}");
    }
    for (name, schema) in components {
        compile(&doc, schema);
        assert!(
            schema.get("type").is_some() || schema.get("anyOf").is_some(),
            "{name}"
        );
    }
    let text = doc.to_string();
    for (at, _) in text.match_indices("#/components/schemas/") {
        let name: String = text[at + 21..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        assert!(components.contains_key(&name), "dangling $ref to {name}");
    }
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let success: Vec<&String> = responses
                .keys()
                .filter(|s| s.starts_with('2') || *s == "101")
                .collect();
            assert_eq!(success.len(), 1, "{method} {path}");
            let content = responses[success[0]].get("content");
            // only a 204 or a WebSocket upgrade (101) has no body to describe
            assert_eq!(
                content.is_none(),
                success[0] == "204" || success[0] == "101",
                "{method} {path}"
            );
            for media in content
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|c| c.values())
            {
                assert_ne!(media["schema"], json!({}), "{method} {path}");
            }
            if method == "get" || method == "delete" {
                assert!(op.get("requestBody").is_none(), "{method} {path}");
            }
        }
    }
}

#[actix_web::test]
async fn the_daemon_socket_is_documented_as_an_upgrade() {
    let app = spawn_app().await;
    let doc = Checker::new(&app).await.doc;
    let op = &doc["paths"]["/api/daemon/ws"]["get"];
    assert!(op["responses"]["101"].is_object(), "{op}");
    assert!(op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "runtime_ids" && p["in"] == "query"));
    // its scenario is tests/daemon_ws.rs: the Checker speaks HTTP only
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let path = format!("/api/daemon/ws?runtime_ids={rt}");
    let refused = app.get(&path, &alice.token).await;
    assert_eq!(refused.status, 400);
    let schema = json!({"$ref": "#/components/schemas/Error"});
    assert_valid(
        &doc,
        &schema,
        &refused.body,
        "a request that is no handshake",
    );
}

#[actix_web::test]
async fn workspace_member_and_token_replies_fit_the_document() {
    let app = spawn_app().await;
    let c = Checker::new(&app).await;
    let (alice, _) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", None);
    let carol = app.add_user("carol@example.com", None);
    let a = alice.token.as_str();

    c.get("/health", a).await;
    c.get("/api/me", a).await;
    let token = json!({"name": "ci", "expires_in_days": 30});
    let token = c.post("/api/tokens", a, Some(token)).await;
    c.get("/api/tokens", a).await;
    c.delete(&format!("/api/tokens/{}", id(&token)), a).await;

    let ws = json!({"name": "Lab", "description": "x"});
    let ws = id(&c.post("/api/workspaces", a, Some(ws)).await);
    c.get("/api/workspaces", a).await;
    c.get(&format!("/api/workspaces/{ws}"), a).await;

    let members = format!("/api/workspaces/{ws}/members");
    let mut invitations = Vec::new();
    for (email, role) in [("bob", Some("admin")), ("carol", None), ("dave", None)] {
        let body = json!({"email": format!("{email}@example.com"), "role": role});
        invitations.push(id(&c.post(&members, a, Some(body)).await));
    }
    c.get(&format!("/api/workspaces/{ws}/invitations"), a).await;
    c.get("/api/invitations", &bob.token).await;
    let accept = format!("/api/invitations/{}/accept", invitations[0]);
    let member = id(&c.post(&accept, &bob.token, None).await);
    let decline = format!("/api/invitations/{}/decline", invitations[1]);
    c.post(&decline, &carol.token, None).await;
    c.delete(
        &format!("/api/workspaces/{ws}/invitations/{}", invitations[2]),
        a,
    )
    .await;

    c.get(&members, a).await;
    let bob_member = format!("{members}/{member}");
    c.call("patch", &bob_member, a, Some(json!({"role": "member"})))
        .await;
    c.call("put", &bob_member, a, Some(json!({"role": "admin"})))
        .await;
    let minted = format!("/api/workspaces/{ws}/daemon-tokens");
    c.post(&minted, a, Some(json!({"daemon_id": "mbp"}))).await;
    let settings = json!({"timezone": "Asia/Kolkata"});
    c.call("patch", &format!("/api/workspaces/{ws}"), a, Some(settings))
        .await;
    let settings = json!({"name": "Lab 2", "description": null});
    c.call("put", &format!("/api/workspaces/{ws}"), a, Some(settings))
        .await;
    let settings = json!({"max_concurrent_tasks": 40});
    c.call("patch", &format!("/api/workspaces/{ws}"), a, Some(settings))
        .await;
    let hooks = format!("/api/webhooks?workspace_id={ws}");
    let hook = json!({"url": "https://example.com/hook", "events": ["runtime:online"]});
    let hook = id(&c.post(&hooks, a, Some(hook)).await);
    c.get(&hooks, a).await;
    // an event for it: a runtime comes online
    app.runtime(a, &ws, "hook-box", "claude").await;
    c.get(&format!("/api/webhooks/{hook}/deliveries"), a).await;
    c.delete(&format!("/api/webhooks/{hook}"), a).await;
    let budgets = format!("/api/budgets?workspace_id={ws}");
    let whole = json!({"scope": "workspace", "scope_id": null, "period": "monthly",
                       "limit_usd": 25.5, "warn_percent": 75});
    let budget = id(&c.post(&budgets, a, Some(whole)).await);
    let bobs = json!({"scope": "member", "scope_id": bob.id, "period": "daily", "limit_usd": 2});
    c.post(&budgets, a, Some(bobs)).await;
    c.get(&budgets, a).await;
    let one = format!("/api/budgets/{budget}?workspace_id={ws}");
    c.call(
        "put",
        &one,
        a,
        Some(json!({"limit_usd": 30, "warn_percent": 90})),
    )
    .await;
    c.delete(&one, a).await;
    c.delete(&bob_member, a).await;
}

/// A registered runtime with a ping and an update waiting for it; returns
/// the runtime, ping and update ids.
async fn runtime_with_probes(c: &Checker<'_>, ws: &str, user: &str, daemon: &str) -> [String; 3] {
    let register = common::registration(ws, "mbp", &["claude"]);
    let registered = c.post("/api/daemon/register", daemon, Some(register)).await;
    let rt = id(&registered["runtimes"][0]);
    c.get(&format!("/api/runtimes?workspace_id={ws}"), user)
        .await;
    let ping = id(&c
        .post(&format!("/api/runtimes/{rt}/ping"), user, None)
        .await);
    let target = json!({"target_version": "2.0.0"});
    let update = format!("/api/runtimes/{rt}/update");
    let update = id(&c.post(&update, user, Some(target)).await);
    let beat = json!({"runtime_id": rt});
    let beat = c.post("/api/daemon/heartbeat", daemon, Some(beat)).await;
    assert!(beat["pending_ping"].is_object() && beat["pending_update"].is_object());
    [rt, ping, update]
}

#[actix_web::test]
async fn daemon_and_runtime_replies_fit_the_document() {
    let app = spawn_app().await;
    let c = Checker::new(&app).await;
    let (alice, ws) = app.init_user("alice@example.com");
    let a = alice.token.as_str();
    let d = &app.daemon_token(a, &ws, "mbp").await;
    let [rt, ping, update] = runtime_with_probes(&c, &ws, a, d).await;

    let result = json!({"status": "completed", "output": "pong", "duration_ms": 12});
    let path = format!("/api/daemon/runtimes/{rt}/ping/{ping}/result");
    c.post(&path, d, Some(result)).await;
    c.get(&format!("/api/runtimes/{rt}/ping/{ping}"), a).await;
    let path = format!("/api/daemon/runtimes/{rt}/update/{update}/result");
    c.post(&path, d, Some(json!({"status": "running"}))).await;
    c.get(&format!("/api/runtimes/{rt}/update/{update}"), a)
        .await;

    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let entry =
        json!({"date": today, "provider": "anthropic", "model": "sonnet", "input_tokens": 1});
    let usage = format!("/api/daemon/runtimes/{rt}/usage");
    c.post(&usage, d, Some(json!({ "entries": [entry] }))).await;
    // an entry outside the request schema is refused on its own, in `rejected`
    let bad = json!({"entries": [{"date": "2026-02-30", "provider": "anthropic"}]});
    let reply = app.post(&usage, d, bad).await;
    assert_eq!(reply.body["rejected"][0]["index"], 0);
    let schema = json!({"$ref": "#/components/schemas/UsageReport"});
    assert_valid(
        &c.doc,
        &schema,
        &reply.body,
        "a report with a rejected entry",
    );
    c.get(&format!("/api/runtimes/{rt}/usage?days=7"), a).await;

    c.get("/api/daemon/workspaces", d).await;
    c.get("/api/daemon/workspaces", a).await;
    let reason = json!({"code": "not_executable", "detail": "exec format error",
                        "repair": {"package": "@acme/cli", "command": "npm rebuild @acme/cli", "shell": "bash"}});
    let gone = json!({"runtime_ids": [rt], "offline_reasons": {&rt: reason}});
    c.post("/api/daemon/deregister", d, Some(gone)).await;
    let listed = c.get(&format!("/api/runtimes?workspace_id={ws}"), a).await;
    assert_eq!(listed[0]["offline_reason"]["code"], "not_executable");
    c.delete(&format!("/api/runtimes/{rt}"), a).await;
}

#[actix_web::test]
async fn todays_daemon_registration_fits_the_document() {
    let app = spawn_app().await;
    let c = Checker::new(&app).await;
    let (alice, ws) = app.init_user("alice@example.com");
    let a = alice.token.as_str();
    let old = app.runtime(a, &ws, "alice-mbp.local", "claude").await;
    let body = json!({
        "workspace_id": ws,
        "daemon_id": "5f0c2b8e-4d7a-4c1e-9a39-1b2f6f0e7d11",
        "legacy_daemon_ids": ["alice-mbp", "alice-mbp.local"],
        "device_name": "mbp",
        "cli_version": "0.30.1",
        "launched_by": "desktop",
        "runtimes": [{"name": "", "type": "claude", "version": "2.1.0", "status": "online"}],
        "failed_profiles": [{"profile_id": "0d8d6f1e-3b0f-4a57-8a55-0f5b0a3f9c10",
                             "command_name": "ccms", "reason": "command not found on PATH: ccms"}],
    });
    let registered = c.post("/api/daemon/register", a, Some(body)).await;
    assert_ne!(id(&registered["runtimes"][0]), old);
    let beat = json!({"runtime_id": id(&registered["runtimes"][0]), "supports_batch_import": true});
    c.post("/api/daemon/heartbeat", a, Some(beat)).await;
    // the failed profile is listed, offline, with its reason
    let listed = c.get(&format!("/api/runtimes?workspace_id={ws}"), a).await;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed:#}");
}

#[actix_web::test]
async fn agent_task_and_usage_replies_fit_the_document() {
    let app = spawn_app().await;
    let c = Checker::new(&app).await;
    let (alice, ws) = app.init_user("alice@example.com");
    let a = alice.token.as_str();
    let d = &app.daemon_token(a, &ws, "mbp").await;
    let rt = app.runtime(d, &ws, "mbp", "claude").await;

    let agents = format!("/api/agents?workspace_id={ws}");
    let body = json!({"name": "fixer", "runtime_id": rt, "runtime_config": {"model": "opus"}});
    let agent = id(&c.post(&agents, a, Some(body)).await);
    c.get(&agents, a).await;
    let one = format!("/api/agents/{agent}");
    c.get(&one, a).await;
    let edit = json!({"visibility": "workspace", "avatar_url": null});
    c.call("put", &one, a, Some(edit)).await;
    let queue = format!("/api/agents/{agent}/tasks");
    let mut tasks = Vec::new();
    for prompt in ["fix it", "test it", "ship it"] {
        let body = json!({"prompt": prompt, "priority": 1, "issue_id": "ISSUE-1"});
        tasks.push(id(&c.post(&queue, a, Some(body)).await));
    }
    c.get(&format!("/api/daemon/runtimes/{rt}/tasks/pending"), d)
        .await;

    let claim = format!("/api/daemon/runtimes/{rt}/tasks/claim");
    let claimed = c.post(&claim, d, None).await;
    assert_eq!(claimed["task"]["agent"]["name"], "fixer");
    let task = |what: &str| format!("/api/daemon/tasks/{}/{what}", id(&claimed["task"]));
    c.get(&task("status"), d).await;
    c.post(&task("start"), d, None).await;
    c.post(&task("progress"), d, Some(json!({"line": "compiling"})))
        .await;
    let messages = json!({"messages": [{"seq": 1, "type": "text", "content": "hi"}]});
    c.post(&task("messages"), d, Some(messages)).await;
    c.get(&task("messages"), d).await;
    c.get(
        &format!(
            "/api/tasks/{}/messages?after_seq=0&limit=10",
            id(&claimed["task"])
        ),
        a,
    )
    .await;
    let usage =
        json!({"usage": [{"provider": "anthropic", "model": "sonnet", "input_tokens": 10}]});
    c.post(&task("usage"), d, Some(usage)).await;
    let done = c
        .post(&task("complete"), d, Some(json!({"summary": "done"})))
        .await;
    assert_eq!(done["result"], json!({"summary": "done"}));

    let second = c.post(&claim, d, None).await;
    let failing = format!("/api/daemon/tasks/{}/fail", id(&second["task"]));
    c.post(&failing, d, Some(json!({"error": "boom"}))).await;
    c.post(&format!("/api/tasks/{}/cancel", tasks[2]), a, None)
        .await;
    // nothing left to claim
    assert_eq!(c.post(&claim, d, None).await, json!({"task": null}));
    c.get(&queue, a).await;
    c.get(&format!("/api/runtimes/{rt}/activity"), a).await;
    c.get(&format!("/api/usage/daily?workspace_id={ws}&days=7"), a)
        .await;
    c.get(&format!("/api/usage/summary?workspace_id={ws}"), a)
        .await;

    c.post(&format!("/api/agents/{agent}/archive"), a, None)
        .await;
    c.post(&format!("/api/agents/{agent}/restore"), a, None)
        .await;
}

#[actix_web::test]
async fn current_daemon_replies_fit_the_document() {
    let app = spawn_app().await;
    let c = Checker::new(&app).await;
    let (alice, ws) = app.init_user("alice@example.com");
    let a = alice.token.as_str();
    let d = &app.daemon_token(a, &ws, "mbp").await;
    let rt = app.runtime(d, &ws, "mbp", "claude").await;
    c.post("/api/tokens/current/renew", d, None).await;
    c.post("/api/tokens/current/renew", a, None).await;

    let agent = app.agent(a, &ws, &rt, json!({})).await;
    for prompt in ["one", "two", "three"] {
        let body = json!({"prompt": prompt, "issue_id": "GH-1"});
        let r = app
            .post(&format!("/api/agents/{agent}/tasks"), a, body)
            .await;
        assert_eq!(r.status, 201);
    }
    let claim = format!("/api/daemon/runtimes/{rt}/tasks/claim");
    let first = id(&app.post(&claim, d, json!({})).await.body["task"]);
    let lease = format!("/api/daemon/runtimes/{rt}/tasks/{first}/prepare-lease");
    let leased = c.post(&lease, d, None).await;
    assert!(leased["prepare_lease_expires_at"].is_string());
    let task = |what: &str| format!("/api/daemon/tasks/{first}/{what}");
    let pin = json!({"session_id": "sess-1", "work_dir": "/w/t"});
    c.post(&task("session"), d, Some(pin)).await;
    c.post(&task("start"), d, None).await;
    let progress = json!({"summary": "Launching claude", "step": 1, "total": 2});
    c.post(&task("progress"), d, Some(progress)).await;
    let messages = json!({"messages": [{"seq": 1, "type": "tool_use", "tool": "bash",
                                        "input": {"command": "ls"}}]});
    c.post(&task("messages"), d, Some(messages)).await;
    let usage = json!({"usage": [{"provider": "anthropic", "model": "sonnet", "input_tokens": 10,
                                  "cost_usd_ticks": 25}]});
    c.post(&task("usage"), d, Some(usage)).await;
    c.get(&task("gc-check"), d).await;
    let cancelled = c.post(&format!("/api/tasks/{first}/cancel"), a, None).await;
    assert_eq!(cancelled["session_id"], "sess-1");
    let ack = json!({"branch_name": "agent/one", "durable_work_dir": "/home/a/repo"});
    c.post(&task("cancel-ack"), d, Some(ack)).await;
    c.get(&task("gc-check"), d).await;
    c.get(&format!("/api/runtimes/{rt}/usage"), a).await;

    c.get("/api/daemon/issues/GH-1/gc-check", d).await;
    let batch = format!("/api/daemon/workspaces/{ws}/issues/gc-check");
    let results = c
        .post(&batch, d, Some(json!({"issue_ids": ["GH-1", "GH-2"]})))
        .await;
    assert_eq!(results["issues"][1]["found"], false);
    let second = id(&app.post(&claim, d, json!({})).await.body["task"]);
    assert_ne!(second, first);
    let recovered = c
        .post(
            &format!("/api/daemon/runtimes/{rt}/recover-orphans"),
            d,
            None,
        )
        .await;
    assert_eq!(recovered["orphaned"], 1);

    c.get(&format!("/api/daemon/workspaces/{ws}/repos"), d)
        .await;
    c.get(&format!("/api/daemon/workspaces/{ws}/runtime-profiles"), d)
        .await;
    let other = agenthub::domain::ChatSessionId::new();
    c.get(&format!("/api/daemon/chat-sessions/{other}/gc-check"), d)
        .await;
    c.get(&format!("/api/daemon/autopilot-runs/{other}/gc-check"), d)
        .await;
}
