//! Wake-up latency of the daemon socket, against the real binary.
//!
//! `scripts/bench-ws.sh` (or `cargo bench --bench ws`); knob: WS_TASKS
//! (200). A simulated current Multica daemon opens `GET /api/daemon/ws`,
//! heartbeats once (the ack must offer `rpc-v1`), and then does what the
//! daemon does on a `daemon:task_available` wake-up: a `tasks.claim` RPC
//! over the same socket. Tasks are queued over HTTP one at a time; each
//! sample is the time from the queue request's 201 to the daemon holding
//! the claimed task (its `auth_token` in hand). Between samples the daemon
//! starts and completes the task with that token, unmeasured.
//!
//! Without the socket the daemon finds work only when it polls, every
//! 30 s by default (`MULTICA_DAEMON_POLL_INTERVAL`).

mod support;

use std::process::Command;

use std::time::{Duration, Instant};
use support::start_server;

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

/// The current daemon's default poll interval, its only way to find work
/// without the socket.
const DAEMON_POLL_INTERVAL: Duration = Duration::from_secs(30);
const DAEMON_ID: &str = "bench-mbp";

/// `agenthub init`: the PAT and workspace of the machine's owner.
fn init(dir: &std::path::Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agenthub"))
        .current_dir(dir)
        .args([
            "init",
            "--email",
            "ws@example.com",
            "--db",
            "ws.db",
            "--json",
        ])
        .output()
        .expect("init");
    let init: Value = serde_json::from_slice(&out.stdout).expect("init json");
    let field = |name: &str| init[name].as_str().expect(name).to_string();
    (field("token"), field("workspace_id"))
}

async fn call(client: &awc::Client, url: String, token: &str, body: Value) -> Value {
    let mut res = client
        .post(url)
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send_json(&body)
        .await
        .expect("request");
    assert!(res.status().is_success(), "{}", res.status());
    res.json::<Value>().limit(16 << 20).await.expect("json")
}

fn text(kind: &str, payload: Value) -> Message {
    Message::Text(json!({"type": kind, "payload": payload}).to_string().into())
}

/// A task the daemon holds: its id, its token, and when the claim's reply
/// arrived.
type Held = (String, String, Instant);

/// The simulated daemon: heartbeats once (`ready` once acked), then claims
/// over the socket on every wake-up and reports each task it holds.
async fn daemon(
    base: String,
    token: String,
    runtime: String,
    ready: oneshot::Sender<()>,
    held: mpsc::UnboundedSender<Held>,
) {
    let url = format!(
        "{}/api/daemon/ws?runtime_ids={runtime}",
        base.replacen("http", "ws", 1)
    );
    let (_, mut io) = awc::Client::new()
        .ws(url)
        .bearer_auth(&token)
        .max_frame_size(64 << 20)
        .connect()
        .await
        .expect("open the daemon socket");
    io.send(text("daemon:heartbeat", json!({"runtime_id": runtime})))
        .await
        .expect("heartbeat");
    let claim = json!({"daemon_id": DAEMON_ID, "runtime_ids": [runtime], "max_tasks": 4});
    let mut requests = 0u64;
    let mut ready = Some(ready);
    while let Some(Ok(frame)) = io.next().await {
        let bytes = match frame {
            Frame::Text(bytes) => bytes,
            Frame::Ping(bytes) => {
                let _ = io.send(Message::Pong(bytes)).await;
                continue;
            }
            Frame::Close(_) => return,
            _ => continue,
        };
        let message: Value = serde_json::from_slice(&bytes).expect("frame");
        let payload = &message["payload"];
        match message["type"].as_str() {
            Some("daemon:heartbeat_ack") => {
                let caps = payload["server_capabilities"]
                    .as_array()
                    .expect("capabilities");
                assert!(caps.iter().any(|c| c == "rpc-v1"), "no rpc-v1 in {payload}");
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
            Some("daemon:task_available") => {
                requests += 1;
                let request = json!({"request_id": format!("claim-{requests}"),
                    "method": "tasks.claim", "body": claim, "timeout_ms": 5000});
                io.send(text("daemon:rpc_request", request))
                    .await
                    .expect("claim");
            }
            Some("daemon:rpc_response") => {
                let arrived = Instant::now();
                assert_eq!(payload["status"], 200, "{payload}");
                for task in payload["body"]["tasks"].as_array().expect("tasks") {
                    let id = task["id"].as_str().expect("id").to_string();
                    let auth = task["auth_token"].as_str().expect("auth_token").to_string();
                    if held.send((id, auth, arrived)).is_err() {
                        return;
                    }
                }
            }
            _ => {}
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn line(label: &str, mut samples: Vec<Duration>) -> f64 {
    samples.sort_unstable();
    let p50 = percentile(&samples, 0.5);
    println!(
        "{label:<36} n={:<4} p50={p50:>6.2}ms p99={:>6.2}ms max={:>6.2}ms",
        samples.len(),
        percentile(&samples, 0.99),
        percentile(&samples, 1.0),
    );
    p50
}

async fn run(base: String, token: String, ws: String, n: usize) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let register = json!({"workspace_id": ws, "daemon_id": DAEMON_ID, "device_name": "mbp",
        "cli_version": "0.9.1", "runtimes": [{"type": "claude", "version": "2.0"}]});
    let registered = call(
        &client,
        format!("{base}/api/daemon/register"),
        &token,
        register,
    )
    .await;
    let runtime = registered["runtimes"][0]["id"]
        .as_str()
        .expect("runtime")
        .to_string();
    let mut res = client
        .post(format!("{base}/api/agents"))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .insert_header(("X-Workspace-ID", ws.as_str()))
        .send_json(&json!({"name": "bench", "runtime_id": runtime}))
        .await
        .expect("agent");
    let agent: Value = res.json().await.expect("agent json");
    let agent = agent["id"].as_str().expect("agent id").to_string();

    let (tx, mut held) = mpsc::unbounded_channel();
    let (ready, acked) = oneshot::channel();
    actix_web::rt::spawn(daemon(base.clone(), token.clone(), runtime, ready, tx));
    acked.await.expect("the daemon's heartbeat is acked");
    // the first task warms up the connections and is not counted
    let mut from_201 = Vec::with_capacity(n);
    let mut from_send = Vec::with_capacity(n);
    for i in 0..=n {
        let sent = Instant::now();
        let body = json!({"prompt": format!("task {i}"), "priority": 0});
        let task = call(
            &client,
            format!("{base}/api/agents/{agent}/tasks"),
            &token,
            body,
        )
        .await;
        let answered = Instant::now();
        let wait = tokio::time::timeout(Duration::from_secs(10), held.recv());
        let (id, auth, at) = wait.await.expect("claimed within 10 s").expect("daemon up");
        assert_eq!(task["id"].as_str(), Some(id.as_str()));
        if i > 0 {
            from_201.push(at.saturating_duration_since(answered));
            from_send.push(at - sent);
        }
        let t = format!("{base}/api/daemon/tasks/{id}");
        call(&client, format!("{t}/start"), &auth, json!({})).await;
        call(
            &client,
            format!("{t}/complete"),
            &auth,
            json!({"output": "ok"}),
        )
        .await;
    }
    let p50 = line("queue 201 → daemon holds the task", from_201);
    line("queue request sent → daemon holds it", from_send);
    let poll = DAEMON_POLL_INTERVAL.as_secs_f64() * 1000.0;
    println!(
        "without the socket the daemon polls every {:.0} s: a task waits {:.0} ms on average (up to {:.0} ms), {:.0}x the socket's median",
        poll / 1000.0,
        poll / 2.0,
        poll,
        poll / 2.0 / p50.max(0.001)
    );
}

fn main() {
    let n = std::env::var("WS_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("temp dir");
    let (token, ws) = init(dir.path());
    let server = start_server(dir.path(), "ws.db");
    println!("agenthub ws: {n} tasks queued one at a time over HTTP, one daemon on the socket");
    actix_web::rt::System::new().block_on(run(server.base.clone(), token, ws, n));
    drop(server);
}
