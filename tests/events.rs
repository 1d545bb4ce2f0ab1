//! `GET /api/events`: the workspace's live event stream (SSE).

mod common;

use std::time::Duration;

use common::spawn_app;
use futures_util::StreamExt;

/// Reads the SSE body until `needle` appears (or 10 s pass); returns what
/// was read.
async fn read_until<S, E>(body: &mut S, needle: &str) -> String
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, E>> + Unpin,
    E: std::fmt::Debug,
{
    read_within(body, needle, Duration::from_secs(10)).await
}

async fn read_within<S, E>(body: &mut S, needle: &str, limit: Duration) -> String
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, E>> + Unpin,
    E: std::fmt::Debug,
{
    let mut text = String::new();
    let deadline = std::time::Instant::now() + limit;
    while !text.contains(needle) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let chunk = actix_web::rt::time::timeout(left, body.next())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in {text:?}"))
            .expect("stream open")
            .expect("chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

#[actix_web::test]
async fn members_follow_their_workspaces_events() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let (bob, bws) = app.init_user("bob@example.com");
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let mut res = client
        .get(format!("{}/api/events?workspace_id={ws}", app.base))
        .insert_header(("Authorization", format!("Bearer {}", alice.token)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.headers().get("content-type").unwrap().to_str().unwrap(),
        "text/event-stream"
    );

    // another workspace's event first, then ours: only ours arrives
    app.runtime(&bob.token, &bws, "bobs-mbp", "claude").await;
    let rt = app.runtime(&alice.token, &ws, "alices-mbp", "claude").await;
    let text = read_until(&mut res, &rt).await;
    assert!(text.contains("event: daemon:register\n"), "{text}");
    assert!(!text.contains("bobs-mbp"), "{text}");
    let data = text
        .lines()
        .find(|l| l.starts_with("data: "))
        .map(|l| &l["data: ".len()..])
        .unwrap();
    let event: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(event["type"], "daemon:register");
    assert_eq!(event["workspace_id"], ws.as_str());
    assert_eq!(event["payload"]["action"], "register");
    assert_eq!(event["payload"]["runtimes"][0]["id"], rt.as_str());

    let r = app
        .delete(&format!("/api/runtimes/{rt}"), &alice.token)
        .await;
    assert_eq!(r.status, 200);
    let text = read_until(&mut res, "\"delete\"").await;
    assert!(text.contains("event: daemon:register"), "{text}");
}

#[actix_web::test]
async fn event_stream_is_scoped_like_every_workspace_route() {
    let app = spawn_app().await;
    let (_alice, ws) = app.init_user("alice@example.com");
    let (mallory, _) = app.init_user("mallory@example.com");
    let r = app
        .get(&format!("/api/events?workspace_id={ws}"), &mallory.token)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "workspace not found");
    let r = app.get("/api/events", &mallory.token).await;
    assert_eq!(r.status, 400);
    let r = app
        .request("GET", &format!("/api/events?workspace_id={ws}"), None, None)
        .await;
    assert_eq!(r.status, 401);
}

#[actix_web::test]
async fn a_client_that_never_reads_does_not_hold_up_writers() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    // connected, never read
    let _stalled = client
        .get(format!("{}/api/events?workspace_id={ws}", app.base))
        .insert_header(("Authorization", format!("Bearer {}", alice.token)))
        .send()
        .await
        .unwrap();
    // far more than the subscriber's buffer and the socket can hold
    let blob = "x".repeat(4096);
    for i in 0..5000 {
        app.state.events.publish(
            "task:message",
            ws.parse().unwrap(),
            serde_json::json!({"n": i, "blob": blob}),
        );
    }
    let started = std::time::Instant::now();
    for i in 0..20 {
        let r = app
            .register(&alice.token, &ws, &format!("host-{i}"), &["claude"])
            .await;
        assert_eq!(r.status, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(app.count("SELECT count(*) FROM agent_runtime"), 20);
}

#[actix_web::test]
async fn an_idle_stream_gets_keep_alive_comments() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let mut res = client
        .get(format!("{}/api/events?workspace_id={ws}", app.base))
        .insert_header(("Authorization", format!("Bearer {}", alice.token)))
        .send()
        .await
        .unwrap();
    // nothing happens in the workspace; within the 15 s period a comment
    // line (starting with ':') keeps the connection visibly alive
    let text = read_within(&mut res, "\n:", Duration::from_secs(25)).await;
    assert!(!text.contains("event:"), "{text}");
}
