//! `GET /api/daemon/ws`, the daemon's control socket, over a real
//! WebSocket on loopback: who may open one, the wake-up a queued task
//! sends, heartbeats and `tasks.claim` over it, and that a socket that
//! goes away or stops reading costs the server nothing.
//!
//! The reply structs mirror the types the current Multica daemon decodes
//! (`protocol.Message`, `TaskAvailablePayload`, `DaemonHeartbeatAckPayload`,
//! `RPCResponsePayload`, and its `Task`).

mod common;

use std::time::{Duration, Instant};

use awc::ws::{Frame, Message};
use common::ws::{open, RpcResponse};
use common::{eventually, Machine, TestApp};
use futures_util::SinkExt;
use serde::Deserialize;
use serde_json::{json, Value};

/// `protocol.TaskAvailablePayload`.
#[derive(Deserialize, Debug)]
struct TaskAvailable {
    runtime_id: String,
    task_id: String,
}

/// `protocol.DaemonHeartbeatAckPayload`, with the ping agenthub hands over.
#[derive(Deserialize, Debug)]
struct HeartbeatAck {
    runtime_id: String,
    status: String,
    #[serde(default)]
    server_capabilities: Vec<String>,
    #[serde(default)]
    runtime_gone: bool,
    pending_ping: Option<PendingPing>,
}

#[derive(Deserialize, Debug)]
struct PendingPing {
    id: String,
}

/// The daemon's `Task` (the fields it needs to run one).
#[derive(Deserialize, Debug)]
struct Task {
    id: String,
    agent_id: String,
    runtime_id: String,
    workspace_id: String,
    auth_token: String,
    agent: Option<AgentData>,
}

#[derive(Deserialize, Debug)]
struct AgentData {
    id: String,
    name: String,
}

#[derive(Deserialize, Debug)]
struct Claimed {
    tasks: Vec<Task>,
}

/// Alice's machine `mbp` with its daemon token and an agent `fixer` on it.
async fn machine() -> Machine {
    common::machine(json!({"name": "fixer"})).await
}

#[actix_web::test]
async fn a_queued_task_wakes_the_connected_daemon_at_once() {
    let m = machine().await;
    let mut daemon = open(&m.app, Some(&m.daemon), &[&m.rt]).await.unwrap();
    assert_eq!(m.app.state.daemon_hub.sockets(m.rt.parse().unwrap()), 1);
    let queued = Instant::now();
    let task = m.app.task(&m.alice.token, &m.agent, "fix it", 0).await;
    let wakeup: TaskAvailable =
        serde_json::from_value(daemon.next("daemon:task_available").await).unwrap();
    assert!(queued.elapsed() < Duration::from_secs(2));
    assert_eq!(wakeup.runtime_id, m.rt);
    assert_eq!(wakeup.task_id, task);
    // a wake-up hands out nothing: the task waits for a claim
    assert_eq!(m.app.task_status(&task), "queued");
}

#[actix_web::test]
async fn a_socket_is_opened_only_by_a_daemon_acting_for_every_runtime_it_names() {
    let m = machine().await;
    let app = &m.app;
    let carol = app.add_user(
        "carol@example.com",
        Some((&m.ws, agenthub::domain::Role::Admin)),
    );
    let other_machine = app.daemon_token(&m.alice.token, &m.ws, "laptop").await;
    // a task token, minted by an HTTP claim of a task
    app.task(&m.alice.token, &m.agent, "first", 0).await;
    let claimed = app.claim(&m.daemon, &m.rt).await;
    let task_token = claimed.body["task"]["auth_token"]
        .as_str()
        .unwrap()
        .to_string();
    let carols = app.runtime(&carol.token, &m.ws, "carol-mbp", "codex").await;
    let path = format!("/api/daemon/ws?runtime_ids={}", m.rt);
    let before = app.dump();
    for (token, status, message) in [
        (None, 401, "missing authorization header"),
        // a workspace admin does not act for alice's machine
        (Some(carol.token.as_str()), 404, "runtime not found"),
        // alice's own token, minted for another of her machines
        (Some(other_machine.as_str()), 404, "runtime not found"),
        (Some(task_token.as_str()), 404, "runtime not found"),
    ] {
        assert_eq!(open(app, token, &[&m.rt]).await.err(), Some(status));
        let r = app.request("GET", &path, token, None).await;
        assert_eq!((r.status, r.error()), (status, message), "{token:?}");
    }
    // one runtime out of reach refuses the whole socket
    let both = [m.rt.as_str(), carols.as_str()];
    assert_eq!(open(app, Some(&m.daemon), &both).await.err(), Some(404));
    assert_eq!(open(app, Some(&m.daemon), &[]).await.err(), Some(400));
    let r = app.get("/api/daemon/ws", &m.daemon).await;
    assert_eq!((r.status, r.error()), (400, "runtime_ids is required"));
    let r = app.get("/api/daemon/ws?runtime_ids=4be1", &m.daemon).await;
    assert_eq!(r.status, 400);
    // the owner's request that is no WebSocket handshake
    let r = app.get(&path, &m.daemon).await;
    assert_eq!(r.status, 400);
    assert!(
        r.error().starts_with("this route opens a WebSocket"),
        "{}",
        r.error()
    );
    assert_eq!(app.state.daemon_hub.sockets(m.rt.parse().unwrap()), 0);
    assert_eq!(before, app.dump());
}

#[actix_web::test]
async fn a_heartbeat_over_the_socket_works_like_the_http_heartbeat() {
    let m = machine().await;
    let app = &m.app;
    let r = app
        .post(
            "/api/daemon/deregister",
            &m.daemon,
            json!({"runtime_ids": [m.rt]}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(app.runtime_status(&m.rt), "offline");
    let ping = app
        .post(
            &format!("/api/runtimes/{}/ping", m.rt),
            &m.alice.token,
            json!({}),
        )
        .await;
    assert_eq!(ping.status, 200, "{:?}", ping.body);

    let mut daemon = open(app, Some(&m.daemon), &[&m.rt]).await.unwrap();
    daemon
        .send(
            "daemon:heartbeat",
            json!({"runtime_id": m.rt, "supports_batch_import": true}),
        )
        .await;
    let raw = daemon.next("daemon:heartbeat_ack").await;
    let ack: HeartbeatAck = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(ack.runtime_id, m.rt);
    assert_eq!(ack.status, "ok");
    assert!(!ack.runtime_gone);
    // the daemon claims over the socket only when the server says it can
    assert!(ack.server_capabilities.iter().any(|c| c == "rpc-v1"));
    assert_eq!(
        ack.pending_ping.unwrap().id,
        ping.body["id"].as_str().unwrap()
    );
    assert_eq!(app.runtime_status(&m.rt), "online");
    // every field of the HTTP reply, and the same values
    let http = app
        .post(
            "/api/daemon/heartbeat",
            &m.daemon,
            json!({"runtime_id": m.rt}),
        )
        .await;
    assert_eq!(http.status, 200);
    for (field, value) in http.body.as_object().unwrap() {
        match field.as_str() {
            "pending_ping" => {}
            // the socket's list may name more: what only the socket carries
            "server_capabilities" => {
                for capability in value.as_array().unwrap() {
                    assert!(ack.server_capabilities.iter().any(|c| c == capability));
                }
            }
            _ => assert_eq!(&raw[field], value, "{field}"),
        }
    }

    // where HTTP answers 404, the ack says the runtime is gone
    let r = app
        .delete(&format!("/api/runtimes/{}", m.rt), &m.alice.token)
        .await;
    assert_eq!(r.status, 409, "an agent is still bound to it");
    let r = app
        .post(
            &format!("/api/agents/{}/archive", m.agent),
            &m.alice.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .delete(&format!("/api/runtimes/{}", m.rt), &m.alice.token)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    daemon
        .send("daemon:heartbeat", json!({"runtime_id": m.rt}))
        .await;
    let ack: HeartbeatAck =
        serde_json::from_value(daemon.next("daemon:heartbeat_ack").await).unwrap();
    assert_eq!(
        (ack.runtime_id.as_str(), ack.status.as_str()),
        (m.rt.as_str(), "runtime_gone")
    );
    assert!(ack.runtime_gone);
}

#[actix_web::test]
async fn a_heartbeat_for_a_runtime_the_socket_was_not_opened_for_is_ignored() {
    let m = machine().await;
    let codex = m.app.runtime(&m.daemon, &m.ws, "mbp", "codex").await;
    m.app.age_runtime(&codex, 10);
    let mut daemon = open(&m.app, Some(&m.daemon), &[&m.rt]).await.unwrap();
    daemon
        .send("daemon:heartbeat", json!({"runtime_id": codex}))
        .await;
    daemon
        .send("daemon:heartbeat", json!({"runtime_id": m.rt}))
        .await;
    let ack: HeartbeatAck =
        serde_json::from_value(daemon.next("daemon:heartbeat_ack").await).unwrap();
    assert_eq!(ack.runtime_id, m.rt, "the first heartbeat got no ack");
}

#[actix_web::test]
async fn tasks_claim_over_the_socket_dispatches_the_task_with_its_token() {
    let m = machine().await;
    let app = &m.app;
    let mut daemon = open(app, Some(&m.daemon), &[&m.rt]).await.unwrap();
    let task = app.task(&m.alice.token, &m.agent, "fix it", 0).await;
    daemon.next("daemon:task_available").await;
    let body = json!({"daemon_id": "mbp", "runtime_ids": [m.rt], "max_tasks": 4});
    let response = daemon.claim("r-1", body.clone()).await;
    assert_eq!(response.status, 200, "{}", response.error);
    let claimed: Claimed = serde_json::from_value(response.body.unwrap()).unwrap();
    assert_eq!(claimed.tasks.len(), 1);
    let t = &claimed.tasks[0];
    assert_eq!(
        (
            t.id.as_str(),
            t.agent_id.as_str(),
            t.runtime_id.as_str(),
            t.workspace_id.as_str()
        ),
        (
            task.as_str(),
            m.agent.as_str(),
            m.rt.as_str(),
            m.ws.as_str()
        )
    );
    let agent = t.agent.as_ref().unwrap();
    assert_eq!(
        (agent.id.as_str(), agent.name.as_str()),
        (m.agent.as_str(), "fixer")
    );
    assert!(t.auth_token.starts_with("mat_"), "{}", t.auth_token);
    assert_eq!(app.task_status(&task), "dispatched");
    // the task token is what the agent reports with
    let r = app
        .post(
            &format!("/api/daemon/tasks/{task}/start"),
            &t.auth_token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // nothing left
    let response = daemon.claim("r-2", body).await;
    assert_eq!(
        (response.status, response.body),
        (200, Some(json!({"tasks": []})))
    );
}

#[actix_web::test]
async fn tasks_claim_over_the_socket_keeps_the_rules_of_the_http_claim() {
    let m = machine().await;
    let app = &m.app;
    let task = app.task(&m.alice.token, &m.agent, "fix it", 0).await;
    let mut daemon = open(app, Some(&m.daemon), &[&m.rt]).await.unwrap();
    let runtimes = json!([m.rt]);
    for (body, status, error) in [
        (
            json!({"daemon_id": "laptop", "runtime_ids": runtimes, "max_tasks": 1}),
            403,
            "daemon_id does not match token",
        ),
        (
            json!({"runtime_ids": runtimes, "max_tasks": 1}),
            400,
            "daemon_id is required",
        ),
        (
            json!({"daemon_id": "mbp", "runtime_ids": runtimes, "max_tasks": -1}),
            400,
            "max_tasks must not be negative",
        ),
    ] {
        let response = daemon.claim("bad", body).await;
        assert_eq!((response.status, response.error.as_str()), (status, error));
        assert!(response.body.is_none());
    }
    let payload = json!({"request_id": "r-9", "method": "tasks.steal", "body": {}});
    daemon.send("daemon:rpc_request", payload).await;
    let response: RpcResponse =
        serde_json::from_value(daemon.next("daemon:rpc_response").await).unwrap();
    assert_eq!(
        (response.status, response.error.as_str()),
        (404, "unknown rpc method \"tasks.steal\"")
    );
    // 0 tasks asked for, 0 handed out
    let body = json!({"daemon_id": "mbp", "runtime_ids": runtimes, "max_tasks": 0});
    let response = daemon.claim("zero", body).await;
    assert_eq!(response.body, Some(json!({"tasks": []})));
    assert_eq!(app.task_status(&task), "queued");
}

#[actix_web::test]
async fn a_socket_that_goes_away_leaves_the_hub() {
    let m = machine().await;
    let runtime = m.rt.parse().unwrap();
    let hub = &m.app.state.daemon_hub;
    let daemon = open(&m.app, Some(&m.daemon), &[&m.rt]).await.unwrap();
    let mut closing = open(&m.app, Some(&m.alice.token), &[&m.rt]).await.unwrap();
    assert_eq!(hub.sockets(runtime), 2);
    // one drops its connection, the other says goodbye
    drop(daemon);
    closing.io.send(Message::Close(None)).await.unwrap();
    assert!(matches!(
        closing.frame().await,
        Some(Frame::Close(_)) | None
    ));
    assert!(eventually(5, || hub.sockets(runtime) == 0).await);
    // and queueing goes on without anyone to wake
    m.app.task(&m.alice.token, &m.agent, "later", 0).await;
}

/// A daemon that opened a socket with a tiny receive buffer and then
/// stopped reading: whatever the server writes to it piles up.
async fn stalled_socket(app: &TestApp, token: &str, runtime: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET /api/daemon/ws?runtime_ids={runtime} HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// A client's text frame (masked, as clients must; a zero mask leaves the
/// payload as it is).
fn client_frame(kind: &str, payload: Value) -> Vec<u8> {
    let text = json!({"type": kind, "payload": payload}).to_string();
    let mut frame = vec![0x81, 0x80 | 126];
    frame.extend(u16::try_from(text.len()).unwrap().to_be_bytes());
    frame.extend([0, 0, 0, 0]);
    frame.extend(text.as_bytes());
    frame
}

#[actix_web::test]
async fn a_socket_that_never_reads_does_not_hold_up_queueing() {
    use tokio::io::AsyncWriteExt;
    let m = machine().await;
    let app = &m.app;
    let runtime = m.rt.parse().unwrap();
    // the stalled daemon claims 4 MiB of prompts it will never read
    let mut stalled = stalled_socket(app, &m.daemon, &m.rt).await;
    let big = "x".repeat(64 * 1024);
    for name in ["wide-1", "wide-2"] {
        let extra = json!({"name": name, "max_concurrent_tasks": 32});
        let wide = app.agent(&m.alice.token, &m.ws, &m.rt, extra).await;
        for _ in 0..32 {
            app.task(&m.alice.token, &wide, &big, 0).await;
        }
        let body = json!({"daemon_id": "mbp", "runtime_ids": [m.rt], "max_tasks": 32});
        let claim = json!({"request_id": name, "method": "tasks.claim", "body": body});
        stalled
            .write_all(&client_frame("daemon:rpc_request", claim))
            .await
            .unwrap();
    }
    assert!(
        eventually(5, || app.count(
            "SELECT count(*) FROM agent_task_queue WHERE status = 'dispatched'"
        ) == 64)
        .await
    );
    // while another daemon reads as it should
    let mut reading = open(app, Some(&m.daemon), &[&m.rt]).await.unwrap();
    let (woken, mut wakeups) = tokio::sync::mpsc::unbounded_channel();
    actix_web::rt::spawn(async move {
        loop {
            let payload = reading.next("daemon:task_available").await;
            let wakeup: TaskAvailable = serde_json::from_value(payload).unwrap();
            if woken.send(wakeup.task_id).is_err() {
                return;
            }
        }
    });
    assert_eq!(app.state.daemon_hub.sockets(runtime), 2);

    let mut slowest = Duration::ZERO;
    let mut last = String::new();
    for i in 0..300 {
        let started = Instant::now();
        last = app
            .task(&m.alice.token, &m.agent, &format!("task {i}"), 0)
            .await;
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(2),
        "slowest queue request: {slowest:?}"
    );
    // the stalled socket was let go; the reading one was woken every time
    assert_eq!(app.state.daemon_hub.sockets(runtime), 1);
    let mut seen = 0;
    while let Some(task) = wakeups.recv().await {
        seen += 1;
        if task == last {
            break;
        }
    }
    assert_eq!(seen, 300);
    drop(stalled);
}

#[actix_web::test]
async fn revoking_the_token_ends_its_socket() {
    let m = machine().await;
    let app = &m.app;
    let token = app
        .post(
            "/api/tokens",
            &m.alice.token,
            json!({"name": "laptop daemon"}),
        )
        .await;
    assert_eq!(token.status, 201, "{:?}", token.body);
    let mut daemon = open(app, token.body["token"].as_str(), &[&m.rt])
        .await
        .unwrap();
    let r = app
        .delete(
            &format!("/api/tokens/{}", token.body["id"].as_str().unwrap()),
            &m.alice.token,
        )
        .await;
    assert_eq!(r.status, 200);
    let reason = daemon.closed().await.expect("a close frame with a reason");
    assert_eq!(reason.code, awc::ws::CloseCode::Policy);
    assert!(
        eventually(5, || app.state.daemon_hub.sockets(m.rt.parse().unwrap())
            == 0)
        .await
    );
}

#[actix_web::test]
async fn closing_the_hub_at_shutdown_ends_the_sockets() {
    let m = machine().await;
    let mut daemon = open(&m.app, Some(&m.daemon), &[&m.rt]).await.unwrap();
    m.app.state.daemon_hub.close();
    let reason = daemon.closed().await.expect("a close frame with a reason");
    assert_eq!(reason.code, awc::ws::CloseCode::Away);
    assert_eq!(
        reason.description.as_deref(),
        Some("the server is shutting down")
    );
}

#[actix_web::test]
async fn a_socket_outlives_the_request_body_timeout() {
    let app = common::spawn_app_with(|c| c.server.body_timeout_secs = 1).await;
    let (alice, ws) = app.init_user("alice@example.com");
    let runtime = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let mut daemon = open(&app, Some(&alice.token), &[&runtime]).await.unwrap();
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    daemon
        .send("daemon:heartbeat", json!({"runtime_id": runtime}))
        .await;
    let ack: HeartbeatAck =
        serde_json::from_value(daemon.next("daemon:heartbeat_ack").await).unwrap();
    assert_eq!((ack.runtime_id, ack.status), (runtime, "ok".to_string()));
}
