//! Outbound webhooks (issue: whose machine is it, item 5), against a real
//! HTTP receiver on loopback (private targets allowed by config here):
//! signed deliveries, in order per runtime, retried after a 500, shown
//! with their attempts; delivered after a SIGKILL and a restart; refused
//! input and other workspaces' credentials change nothing.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use agenthub::domain::Role;
use common::{cli_init, eventually, spawn_app, spawn_app_with, ServerProcess, TestDb};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// One request the receiver got: its headers of interest and its body.
#[derive(Debug, Clone)]
struct Received {
    event_id: String,
    event: String,
    timestamp: String,
    signature: String,
    body: String,
    answered: u16,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Statuses to answer the next requests with (then 200).
    script: Arc<Mutex<Vec<u16>>>,
    /// Answers only after 15 s: longer than a delivery may take.
    hang: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Bodies of the requests answered 2xx, in arrival order.
    fn delivered(&self) -> Vec<Value> {
        self.got()
            .iter()
            .filter(|r| r.answered == 200)
            .map(|r| serde_json::from_str(&r.body).unwrap())
            .collect()
    }
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    receiver: web::Data<Receiver>,
) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    if receiver.hang.load(std::sync::atomic::Ordering::Relaxed) {
        actix_web::rt::time::sleep(Duration::from_secs(15)).await;
    }
    let answered = {
        let mut script = receiver.script.lock().unwrap();
        if script.is_empty() {
            200
        } else {
            script.remove(0)
        }
    };
    receiver.got.lock().unwrap().push(Received {
        event_id: header("X-Agenthub-Event-Id"),
        event: header("X-Agenthub-Event"),
        timestamp: header("X-Agenthub-Timestamp"),
        signature: header("X-Agenthub-Signature"),
        body: String::from_utf8_lossy(&body).into_owned(),
        answered,
    });
    HttpResponse::build(actix_web::http::StatusCode::from_u16(answered).unwrap()).finish()
}

/// A receiver on a loopback port: `(its URL, what it got)`.
fn start_receiver(port: u16) -> (String, Receiver) {
    let receiver = Receiver::default();
    let data = web::Data::new(receiver.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/hook", web::post().to(receive))
    })
    .workers(1)
    .bind(("127.0.0.1", port))
    .expect("bind the receiver")
    .run();
    actix_web::rt::spawn(server);
    (format!("http://127.0.0.1:{port}/hook"), receiver)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `sha256=<hex>` of HMAC-SHA256(secret, timestamp + "." + body), computed
/// here rather than by the server's own code.
fn expected_signature(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

#[actix_web::test]
async fn deliveries_are_signed_ordered_per_runtime_and_retried_after_a_500() {
    let app = spawn_app_with(|c| c.webhooks.allow_private_targets = true).await;
    let (alice, ws) = app.init_user("alice@example.com");
    let hooks = format!("/api/webhooks?workspace_id={ws}");
    let (url, receiver) = start_receiver(free_port());
    // the first request is answered 500: that event is retried, and the
    // events of its runtime after it wait for it
    receiver.script.lock().unwrap().push(500);
    let r = app
        .post(
            &hooks,
            &alice.token,
            json!({"url": url, "events": ["runtime:online", "runtime:offline", "task:failed"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let secret = r.body["secret"].as_str().unwrap().to_string();
    let hook = r.body["id"].as_str().unwrap().to_string();
    assert!(
        secret.starts_with("whsec_") && secret.len() == 70,
        "{secret}"
    );
    assert_eq!(
        r.body["events"],
        json!(["runtime:online", "runtime:offline", "task:failed"])
    );
    let r = app.get(&hooks, &alice.token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body[0]["id"], hook.as_str());
    assert!(
        r.body[0].get("secret").is_none(),
        "the secret is shown once"
    );
    assert!(!r.body.to_string().contains(&secret));

    // online (registered), offline, online, offline: one runtime
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    app.deregister(&alice.token, &[&rt]).await;
    let r = app
        .post(
            "/api/daemon/heartbeat",
            &alice.token,
            json!({"runtime_id": rt}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    app.deregister(&alice.token, &[&rt]).await;
    // and a task that fails
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let task = app.task(&alice.token, &agent, "fails", 0).await;
    let claimed = app.claim(&alice.token, &rt).await;
    assert_eq!(claimed.body["task"]["id"], task.as_str());
    let r = app
        .post(
            &format!("/api/daemon/tasks/{task}/fail"),
            &alice.token,
            json!({"error": "boom", "failure_reason": "agent_error.process_failure"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    assert!(
        eventually(30, || receiver.delivered().len() >= 5).await,
        "delivered: {:?}",
        receiver.got()
    );
    let delivered = receiver.delivered();
    let runtime_events: Vec<&str> = delivered
        .iter()
        .filter(|e| e["data"]["runtime_id"] == rt.as_str() && e["type"] != "task:failed")
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        runtime_events,
        [
            "runtime:online",
            "runtime:offline",
            "runtime:online",
            "runtime:offline"
        ],
        "in the order they happened"
    );
    let failed: Vec<&Value> = delivered
        .iter()
        .filter(|e| e["type"] == "task:failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["task_id"], task.as_str());
    assert_eq!(
        failed[0]["data"]["failure_reason"],
        "agent_error.process_failure"
    );
    assert_eq!(failed[0]["workspace_id"], ws.as_str());

    // every request: signed over its timestamp and body, headers that match
    let now = chrono::Utc::now().timestamp();
    for got in receiver.got() {
        let body: Value = serde_json::from_str(&got.body).unwrap();
        assert_eq!(got.event_id, body["id"].as_str().unwrap());
        assert_eq!(got.event, body["type"].as_str().unwrap());
        let ts: i64 = got.timestamp.parse().unwrap();
        assert!((now - ts).abs() < 120, "timestamp {ts}");
        assert_eq!(
            got.signature,
            expected_signature(&secret, &got.timestamp, &got.body)
        );
    }
    // the first one twice, with the same id: a 500, then a 200
    let first = &receiver.got()[0];
    assert_eq!(first.answered, 500);
    let again: Vec<Received> = receiver
        .got()
        .into_iter()
        .filter(|r| r.event_id == first.event_id)
        .collect();
    assert_eq!(
        again.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 200]
    );

    // the deliveries page shows it: newest first, attempts and codes
    let r = app
        .get(&format!("/api/webhooks/{hook}/deliveries"), &alice.token)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rows = r.body.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0]["event"], "task:failed");
    let retried = rows
        .iter()
        .find(|d| d["event_id"] == first.event_id.as_str())
        .unwrap();
    assert_eq!(retried["status"], "delivered");
    assert_eq!(retried["next_attempt_at"], Value::Null);
    let codes: Vec<&Value> = retried["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status_code"])
        .collect();
    assert_eq!(codes, [&json!(500), &json!(200)]);
    let r = app
        .get(
            &format!("/api/webhooks/{hook}/deliveries?limit=2"),
            &alice.token,
        )
        .await;
    let page: Vec<&Value> = r.body.as_array().unwrap().iter().collect();
    assert_eq!(page, rows[..2].iter().collect::<Vec<_>>(), "the newest two");

    // deleted: nothing more is sent
    let r = app
        .delete(&format!("/api/webhooks/{hook}"), &alice.token)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let before = receiver.got().len();
    app.runtime(&alice.token, &ws, "box", "codex").await;
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.got().len(), before);
}

#[actix_web::test]
async fn webhooks_are_managers_own_and_refuse_what_they_cannot_keep() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let carol = app.add_user("carol@example.com", Some((&ws, Role::Member)));
    let hooks = format!("/api/webhooks?workspace_id={ws}");
    let (mallory, _mws) = app.init_user("mallory@example.com");
    let before = app.dump();
    for (body, error) in [
        (json!({"events": ["runtime:offline"]}), "url is required"),
        (
            json!({"url": "ftp://example.com/x", "events": ["runtime:offline"]}),
            "url must be http or https",
        ),
        (
            json!({"url": "https://u:p@example.com/x", "events": ["runtime:offline"]}),
            "url must not carry credentials: the signature proves the sender",
        ),
        (
            json!({"url": "http://127.0.0.1:9/x", "events": ["runtime:offline"]}),
            "url points at a loopback, link-local or private address, which webhooks may not reach ([webhooks] allow_private_targets is off)",
        ),
        (
            json!({"url": "http://169.254.169.254/latest", "events": ["runtime:offline"]}),
            "url points at a loopback, link-local or private address, which webhooks may not reach ([webhooks] allow_private_targets is off)",
        ),
        (
            json!({"url": "http://localhost:8080/x", "events": ["runtime:offline"]}),
            "url points at a loopback, link-local or private address, which webhooks may not reach ([webhooks] allow_private_targets is off)",
        ),
        (
            json!({"url": "https://example.com/x", "events": []}),
            "events must be a non-empty list of event types: runtime:offline, runtime:online, task:failed, task:expired, budget:warning, budget:exceeded, agent:status",
        ),
        (
            json!({"url": "https://example.com/x", "events": ["task:done"]}),
            "\"task:done\" is not an event type (runtime:offline, runtime:online, task:failed, task:expired, budget:warning, budget:exceeded, agent:status)",
        ),
        (
            json!({"url": "https://example.com/x", "events": ["task:failed"], "secret": "mine"}),
            "secret is not a webhook setting (url, events)",
        ),
    ] {
        let r = app.post(&hooks, &alice.token, body.clone()).await;
        assert_eq!((r.status, r.error()), (400, error), "{body}");
    }
    let long = format!("https://example.com/{}", "a".repeat(2048));
    let r = app
        .post(
            &hooks,
            &alice.token,
            json!({"url": long, "events": ["task:failed"]}),
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (400, "url is too long (at most 2048 bytes)")
    );
    let ok = json!({"url": "https://example.com/hook", "events": ["task:failed", "task:failed"]});
    let r = app.post(&hooks, &carol.token, ok.clone()).await;
    assert_eq!(
        (r.status, r.error()),
        (403, "only workspace owners and admins can manage webhooks")
    );
    let r = app.get(&hooks, &carol.token).await;
    assert_eq!(r.status, 403);
    assert_eq!(before, app.dump(), "a refusal changed the database");

    let r = app.post(&hooks, &alice.token, ok.clone()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["events"], json!(["task:failed"]));
    let hook = r.body["id"].as_str().unwrap().to_string();
    for _ in 1..20 {
        let r = app.post(&hooks, &alice.token, ok.clone()).await;
        assert_eq!(r.status, 201);
    }
    let r = app.post(&hooks, &alice.token, ok.clone()).await;
    assert_eq!(
        (r.status, r.error()),
        (409, "a workspace has at most 20 webhooks")
    );

    // another workspace's owner, and a member: nothing
    let before = app.dump();
    let deliveries = format!("/api/webhooks/{hook}/deliveries");
    assert_eq!(app.get(&deliveries, &mallory.token).await.status, 404);
    assert_eq!(app.get(&deliveries, &carol.token).await.status, 403);
    let path = format!("/api/webhooks/{hook}");
    assert_eq!(app.delete(&path, &mallory.token).await.status, 404);
    assert_eq!(app.delete(&path, &carol.token).await.status, 403);
    let r = app
        .get(&format!("{deliveries}?limit=0"), &alice.token)
        .await;
    assert_eq!(
        (r.status, r.error()),
        (400, "limit must be a whole number from 1 to 100")
    );
    let r = app
        .get(&format!("{deliveries}?before_seq=x"), &alice.token)
        .await;
    assert_eq!(
        (r.status, r.error()),
        (400, "before_seq must be a positive whole number")
    );
    assert_eq!(before, app.dump());
}

#[actix_web::test]
async fn what_was_committed_before_a_sigkill_is_delivered_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[webhooks]\nallow_private_targets = true\n",
    )
    .unwrap();
    let db = TestDb::fresh(dir.path());
    let init = cli_init(dir.path(), &db);
    let token = init["token"].as_str().unwrap().to_string();
    let ws = init["workspace_id"].as_str().unwrap().to_string();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
    let post = |base: String, path: &'static str, body: Value| {
        let (client, token, ws) = (client.clone(), token.clone(), ws.clone());
        async move {
            let mut r = client
                .post(format!("{base}{path}"))
                .insert_header(("Authorization", format!("Bearer {token}")))
                .insert_header(("X-Workspace-ID", ws))
                .send_json(&body)
                .await
                .expect("request");
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };

    // the receiver is down: every event stays in the outbox
    let mut server = ServerProcess::start(dir.path(), &db);
    let (status, body) = post(
        server.base.clone(),
        "/api/webhooks",
        json!({"url": url, "events": ["runtime:online", "runtime:offline"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(
        server.base.clone(),
        "/api/daemon/register",
        common::registration(&ws, "mbp", &["claude"]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let rt = body["runtimes"][0]["id"].as_str().unwrap().to_string();
    let (status, _) = post(
        server.base.clone(),
        "/api/daemon/deregister",
        json!({"runtime_ids": [rt]}),
    )
    .await;
    assert_eq!(status, 200);
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();

    let (_, receiver) = start_receiver(port);
    let _server = ServerProcess::start(dir.path(), &db);
    assert!(
        eventually(40, || receiver.delivered().len() >= 2).await,
        "delivered after the restart: {:?}",
        receiver.got()
    );
    let types: Vec<Value> = receiver
        .delivered()
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(types, [json!("runtime:online"), json!("runtime:offline")]);
}

#[actix_web::test]
async fn every_event_type_is_written_with_the_change_that_causes_it() {
    let app = spawn_app_with(|c| {
        c.webhooks.allow_private_targets = true;
        c.sweeper.interval_secs = 1;
        c.sweeper.queued_ttl_secs = 1;
    })
    .await;
    let (alice, ws) = app.init_user("alice@example.com");
    let (url, receiver) = start_receiver(free_port());
    let all = json!([
        "runtime:offline",
        "runtime:online",
        "task:failed",
        "task:expired",
        "budget:warning",
        "budget:exceeded",
        "agent:status"
    ]);
    let r = app
        .post(
            &format!("/api/webhooks?workspace_id={ws}"),
            &alice.token,
            json!({"url": url, "events": all}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = app
        .post(
            &format!("/api/budgets?workspace_id={ws}"),
            &alice.token,
            json!({"scope": "workspace", "period": "daily", "limit_usd": 0.01, "warn_percent": 50}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let budget = r.body["id"].as_str().unwrap().to_string();

    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let task = app.task(&alice.token, &agent, "spends", 0).await;
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
    assert_eq!(r.status, 200, "{:?}", r.body);
    // a task's report is its usage so far: $0.006 (past half of $0.01),
    // then $0.012 (past all of it)
    for ticks in [60_000_000, 120_000_000] {
        let usage = json!({"usage": [{"provider": "anthropic", "model": "opus",
            "input_tokens": 10, "output_tokens": 1, "cost_usd_ticks": ticks}]});
        let r = app
            .post(
                &format!("/api/daemon/tasks/{task}/usage"),
                &alice.token,
                usage,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = app
        .post(
            &format!("/api/daemon/tasks/{task}/fail"),
            &alice.token,
            json!({"error": "out of credits", "failure_reason": "agent_error.provider_quota_limit"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    app.deregister(&alice.token, &[&rt]).await;
    // queued for a runtime that stays offline: the sweeper expires it
    let expired = app.task(&alice.token, &agent, "expires", 0).await;

    let seen = |kind: &str| -> Option<Value> {
        receiver.delivered().into_iter().find(|e| e["type"] == kind)
    };
    assert!(
        eventually(30, || all
            .as_array()
            .unwrap()
            .iter()
            .all(|kind| seen(kind.as_str().unwrap()).is_some()))
        .await,
        "delivered: {:?}",
        receiver
            .delivered()
            .iter()
            .map(|e| e["type"].clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        seen("runtime:online").unwrap()["data"]["runtime_id"],
        rt.as_str()
    );
    let offline = seen("runtime:offline").unwrap();
    assert_eq!(offline["data"]["runtime_id"], rt.as_str());
    assert_eq!(offline["data"]["offline_reason"]["code"], "deregistered");
    let working = seen("agent:status").unwrap();
    assert_eq!(working["data"]["agent_id"], agent.as_str());
    assert_eq!(working["data"]["status"], "working");
    let failed = seen("task:failed").unwrap();
    assert_eq!(failed["data"]["task_id"], task.as_str());
    assert_eq!(
        failed["data"]["failure_reason"],
        "agent_error.provider_quota_limit"
    );
    let gone = seen("task:expired").unwrap();
    assert_eq!(gone["data"]["task_id"], expired.as_str());
    assert_eq!(gone["data"]["failure_reason"], "queued_expired");
    for kind in ["budget:warning", "budget:exceeded"] {
        let event = seen(kind).unwrap();
        assert_eq!(event["data"]["budget_id"], budget.as_str(), "{kind}");
        assert_eq!(event["data"]["scope"], "workspace", "{kind}");
    }
    // each event once: the ids are unique
    let ids: std::collections::BTreeSet<String> = receiver
        .delivered()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), receiver.delivered().len());
}

#[actix_web::test]
async fn a_hanging_endpoint_holds_its_own_deliveries_only() {
    let app = spawn_app_with(|c| c.webhooks.allow_private_targets = true).await;
    let (alice, ws) = app.init_user("alice@example.com");
    let hooks = format!("/api/webhooks?workspace_id={ws}");
    let (slow_url, slow) = start_receiver(free_port());
    slow.hang.store(true, std::sync::atomic::Ordering::Relaxed);
    let (url, receiver) = start_receiver(free_port());
    let mut ids = Vec::new();
    for url in [&slow_url, &url] {
        let r = app
            .post(
                &hooks,
                &alice.token,
                json!({"url": url, "events": ["runtime:online"]}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_string());
    }
    // two runtimes come online while the slow endpoint holds its requests
    app.runtime(&alice.token, &ws, "mbp", "claude").await;
    app.runtime(&alice.token, &ws, "box", "codex").await;
    assert!(
        eventually(5, || receiver.delivered().len() == 2).await,
        "the other endpoint waited: {:?}",
        receiver.got()
    );
    assert_eq!(app.get("/api/me", &alice.token).await.status, 200);
    // the hanging one's attempts end at the timeout and are tried again
    let deliveries = format!("/api/webhooks/{}/deliveries", ids[0]);
    let mut rows = Vec::new();
    for _ in 0..40 {
        rows = app
            .get(&deliveries, &alice.token)
            .await
            .body
            .as_array()
            .unwrap()
            .clone();
        if rows
            .iter()
            .all(|d| d["attempts"].as_array().is_some_and(|a| !a.is_empty()))
        {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row["status"], "pending", "{row}");
        assert!(row["next_attempt_at"].is_string(), "{row}");
        let attempt = &row["attempts"][0];
        assert_eq!(attempt["status_code"], Value::Null, "{row}");
        assert!(
            attempt["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{row}"
        );
    }
}

#[actix_web::test]
async fn an_event_is_written_only_if_its_change_commits() {
    let app = spawn_app_with(|c| c.webhooks.allow_private_targets = true).await;
    let (alice, ws) = app.init_user("alice@example.com");
    // a receiver that is never started: the deliveries stay pending
    let url = format!("http://127.0.0.1:{}/hook", free_port());
    let r = app
        .post(
            &format!("/api/webhooks?workspace_id={ws}"),
            &alice.token,
            json!({"url": url, "events": ["runtime:offline"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let rt: agenthub::domain::RuntimeId = app
        .runtime(&alice.token, &ws, "mbp", "claude")
        .await
        .parse()
        .unwrap();
    let events = || app.count("SELECT count(*) FROM webhook_event");
    let deliveries = || app.count("SELECT count(*) FROM webhook_delivery");
    // the runtime goes offline in a transaction that then fails
    let failed = app.db.write_blocking(move |tx| {
        agenthub::store::runtimes::set_offline(tx, rt, r#"{"code":"stale"}"#)?;
        Err::<(), _>(agenthub::store::Error::conflict("changed my mind"))
    });
    assert!(failed.is_err());
    assert_eq!((events(), deliveries()), (0, 0), "rolled back with it");
    app.db
        .write_blocking(move |tx| {
            agenthub::store::runtimes::set_offline(tx, rt, r#"{"code":"stale"}"#)
        })
        .unwrap();
    assert_eq!((events(), deliveries()), (1, 1), "committed with it");

    // the outbox keeps a workspace's newest events only
    for _ in 0..3 {
        app.db
            .write_blocking(move |tx| {
                agenthub::store::runtimes::heartbeat(tx, rt)?;
                agenthub::store::runtimes::set_offline(tx, rt, r#"{"code":"stale"}"#)
            })
            .unwrap();
    }
    assert_eq!((events(), deliveries()), (4, 4));
    let newest = app
        .select("SELECT seq FROM webhook_event ORDER BY seq DESC LIMIT 2")
        .concat();
    let removed = app
        .db
        .write_blocking(|tx| agenthub::store::webhooks::cap(tx, 2))
        .unwrap();
    assert_eq!(removed, 2);
    let kept = app
        .select("SELECT seq FROM webhook_event ORDER BY seq DESC")
        .concat();
    assert_eq!(kept, newest, "the newest two stay");
    assert_eq!(deliveries(), 2, "the deliveries go with their events");
}
