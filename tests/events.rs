//! `GET /api/events`: the workspace's live event stream (SSE).

mod common;

use std::time::Duration;

use agenthub::domain::Role;
use agenthub::store::seed::TokenKind;
use common::{follow, read_until, read_within, spawn_app};
use futures_util::StreamExt;
use serde_json::json;

/// Reads until the server ends the stream (panics if it is still open
/// after `limit`); returns what was read.
async fn read_to_end<S, E>(body: &mut S, limit: Duration) -> String
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, E>> + Unpin,
{
    let mut text = String::new();
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match actix_web::rt::time::timeout(left, body.next()).await {
            Err(_) => panic!("stream still open after {limit:?}: {text:?}"),
            Ok(None) => return text,
            Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Some(Err(_))) => return text,
        }
    }
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
    // it fell far behind: the bus let go of it (and of what it held)
    assert_eq!(app.state.events.subscribers(ws.parse().unwrap()), 0);
}

#[actix_web::test]
async fn a_client_that_falls_behind_is_told_and_dropped() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let mut stalled = follow(&app, &alice.token, &ws).await;
    let blob = "x".repeat(60 * 1024);
    // more than the subscriber's byte budget, published before it reads
    for i in 0..400 {
        app.state.events.publish(
            "task:message",
            ws.parse().unwrap(),
            json!({"n": i, "blob": blob}),
        );
    }
    let text = read_to_end(&mut stalled, Duration::from_secs(20)).await;
    assert!(
        text.contains(": dropped: the client fell behind; reconnect"),
        "{}",
        &text[text.len().saturating_sub(200)..]
    );
    // a new stream works
    let mut again = follow(&app, &alice.token, &ws).await;
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    read_until(&mut again, &rt).await;
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

#[actix_web::test]
async fn a_private_agents_work_reaches_only_those_who_may_read_it() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let admin = app.add_user("admin@example.com", Some((&ws, Role::Admin)));
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let private = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let shared = app
        .agent(&alice.token, &ws, &rt, json!({"visibility": "workspace"}))
        .await;
    let mut bobs = follow(&app, &bob.token, &ws).await;
    let mut admins = follow(&app, &admin.token, &ws).await;
    let mut alices = follow(&app, &alice.token, &ws).await;

    let secret = app.task(&alice.token, &private, "private work", 0).await;
    let claimed = app.claim(&alice.token, &rt).await;
    assert_eq!(claimed.body["task"]["id"], secret.as_str());
    let r = app
        .post(
            &format!("/api/daemon/tasks/{secret}/progress"),
            &alice.token,
            json!({"summary": "the private diff"}),
        )
        .await;
    assert_eq!(r.status, 200);
    // then something bob may see, so we know his stream got this far
    let open = app.task(&alice.token, &shared, "shared work", 0).await;

    let text = read_until(&mut bobs, &open).await;
    assert!(!text.contains(&secret), "{text}");
    assert!(!text.contains("the private diff"), "{text}");
    assert!(!text.contains(&private), "{text}");
    for stream in [&mut admins, &mut alices] {
        let text = read_until(stream, &open).await;
        assert!(text.contains("event: task:queued"), "{text}");
        assert!(text.contains("the private diff"), "{text}");
        assert!(text.contains("event: agent:status"), "{text}");
    }
}

#[actix_web::test]
async fn a_stream_ends_when_its_token_is_revoked_or_its_member_leaves() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let mut bobs = follow(&app, &bob.token, &ws).await;
    let second = app
        .post("/api/tokens", &alice.token, json!({"name": "laptop"}))
        .await;
    assert_eq!(second.status, 201);
    let mut alices = follow(&app, second.body["token"].as_str().unwrap(), &ws).await;

    app.remove_member(&alice.token, &ws, &bob.id).await;
    read_to_end(&mut bobs, Duration::from_secs(5)).await;

    let id = second.body["id"].as_str().unwrap();
    let r = app.delete(&format!("/api/tokens/{id}"), &alice.token).await;
    assert_eq!(r.status, 200);
    read_to_end(&mut alices, Duration::from_secs(5)).await;
    // and neither can open a new one
    let r = app
        .get(&format!("/api/events?workspace_id={ws}"), &bob.token)
        .await;
    assert_eq!(r.status, 404);
}

#[actix_web::test]
async fn one_user_holds_a_bounded_number_of_streams() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let mut open = Vec::new();
    for _ in 0..7 {
        open.push(follow(&app, &alice.token, &ws).await);
    }
    // the eighth over a plain socket, to hang up on it below
    let port = app.base.rsplit(':').next().unwrap();
    let mut eighth = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    std::io::Write::write_all(
        &mut eighth,
        format!(
            "GET /api/events?workspace_id={ws} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
            alice.token
        )
        .as_bytes(),
    )
    .unwrap();
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut eighth, &mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // with any of the user's tokens
    let another = app
        .post("/api/tokens", &alice.token, json!({"name": "second"}))
        .await;
    assert_eq!(another.status, 201);
    for token in [&alice.token, another.body["token"].as_str().unwrap()] {
        let r = app
            .get(&format!("/api/events?workspace_id={ws}"), token)
            .await;
        assert_eq!(r.status, 429);
        assert_eq!(
            r.error(),
            "too many open event streams for this user (at most 8)"
        );
    }
    // a client that hangs up frees its slot (noticed at the latest when
    // the next keep-alive comment cannot be written)
    drop(eighth);
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    loop {
        let res = client
            .get(format!("{}/api/events?workspace_id={ws}", app.base))
            .insert_header(("Authorization", format!("Bearer {}", alice.token)))
            .send()
            .await
            .unwrap();
        if res.status().as_u16() == 200 {
            break;
        }
        assert_eq!(res.status().as_u16(), 429);
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was not freed"
        );
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_web::test]
async fn relayed_daemon_payloads_are_bounded() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let task = app.task(&alice.token, &agent, "x", 0).await;
    assert_eq!(app.claim(&alice.token, &rt).await.status, 200);
    // (messages are bounded per message and per transcript: tests/transcripts.rs)
    for route in ["progress"] {
        let r = app
            .post(
                &format!("/api/daemon/tasks/{task}/{route}"),
                &alice.token,
                json!({"text": "x".repeat(64 * 1024)}),
            )
            .await;
        assert_eq!(r.status, 413, "{route}: {:?}", r.body);
        let r = app
            .post(
                &format!("/api/daemon/tasks/{task}/{route}"),
                &alice.token,
                json!({"text": "x".repeat(60 * 1024)}),
            )
            .await;
        assert_eq!(r.status, 200, "{route}");
    }
}

#[actix_web::test]
async fn a_demoted_admin_stops_seeing_private_work_at_once() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let adam = app.add_user("adam@example.com", Some((&ws, Role::Admin)));
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let private = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let shared = app
        .agent(&alice.token, &ws, &rt, json!({"visibility": "workspace"}))
        .await;
    let mut adams = follow(&app, &adam.token, &ws).await;
    let before = app.task(&alice.token, &private, "before", 0).await;
    read_until(&mut adams, &before).await;

    let member = app.member_id(&alice.token, &ws, &adam.id).await;
    let r = app
        .request(
            "PATCH",
            &format!("/api/workspaces/{ws}/members/{member}"),
            Some(&alice.token),
            Some(&json!({"role": "member"}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200);
    // the stream re-checks within a second of the change
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let after = app.task(&alice.token, &private, "after", 0).await;
    let marker = app.task(&alice.token, &shared, "marker", 0).await;
    let text = read_until(&mut adams, &marker).await;
    assert!(!text.contains(&after), "{text}");
}

#[actix_web::test]
async fn a_stream_ends_when_its_token_expires() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let r = app
        .post(
            "/api/tokens",
            &alice.token,
            json!({"name": "short", "expires_in_days": 1}),
        )
        .await;
    assert_eq!(r.status, 201);
    let token = r.body["token"].as_str().unwrap();
    let mut stream = follow(&app, token, &ws).await;
    // a day has passed
    app.expire_token(TokenKind::Personal, token);
    // checked at the latest with the next keep-alive period (15 s)
    read_to_end(&mut stream, Duration::from_secs(25)).await;
}
