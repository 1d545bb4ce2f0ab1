//! The HTTP edge: content types, error shapes, methods, slow bodies and a
//! database that cannot take more writes.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{spawn_app, spawn_app_with, TestApp};
use serde_json::{json, Value};

/// Writes `request` on a fresh connection, then (after `pause`) `rest`,
/// and returns what the server writes until it closes the connection or
/// 15 s pass, with how long that took.
async fn exchange(
    app: &TestApp,
    request: String,
    rest: Option<&'static str>,
) -> (String, Duration) {
    let addr = app.base.trim_start_matches("http://").to_string();
    actix_web::rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let started = Instant::now();
        stream.write_all(request.as_bytes()).unwrap();
        if let Some(rest) = rest {
            std::thread::sleep(Duration::from_millis(200));
            stream.write_all(rest.as_bytes()).unwrap();
        }
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        (
            String::from_utf8_lossy(&reply).into_owned(),
            started.elapsed(),
        )
    })
    .await
    .unwrap()
}

/// The JSON body of a raw HTTP/1.1 reply.
fn json_body(reply: &str) -> Value {
    let (_, body) = reply.split_once("\r\n\r\n").expect("a complete reply");
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {reply}"))
}

/// Creates workspace `w{i}` carrying `description`, to grow the database.
async fn add_workspace(app: &TestApp, token: &str, i: usize, description: &str) -> common::Reply {
    let body = json!({"name": format!("w{i}"), "description": description});
    app.post("/api/workspaces", token, body).await
}

#[actix_web::test]
async fn a_json_body_without_content_type_is_accepted() {
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    let body = r#"{"name":"Lab"}"#;
    let request = format!(
        "POST /api/workspaces HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        alice.token,
        body.len()
    );
    let (reply, _) = exchange(&app, request, None).await;
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    assert_eq!(json_body(&reply)["name"], "Lab");
    assert_eq!(app.count("SELECT count(*) FROM workspace"), 2);
}

#[actix_web::test]
async fn a_too_large_raw_body_is_a_json_413() {
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    // complete and fail read their body as bytes, not through the JSON
    // extractor
    let huge = format!("{{\"error\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let (status, text) = app
        .send_raw(
            "POST",
            "/api/daemon/tasks/00000000-0000-4000-8000-000000000000/fail",
            &alice.token,
            huge.into_bytes(),
            &[],
        )
        .await;
    assert_eq!(status, 413, "{text}");
    let body: Value = serde_json::from_str(&text).expect("JSON body");
    assert_eq!(
        body,
        json!({"error": "request body too large (limit 1048576 bytes)"})
    );
}

#[actix_web::test]
async fn a_known_path_with_another_method_is_405_with_allow() {
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    let cases = [
        ("PUT", "/api/tokens", "GET, POST"),
        ("GET", "/api/tokens/00000000-0000-4000-8000-000000000000", "DELETE"),
        (
            "POST",
            "/api/workspaces/00000000-0000-4000-8000-000000000000/members/00000000-0000-4000-8000-000000000001",
            "PATCH, PUT, DELETE",
        ),
        ("DELETE", "/health", "GET, HEAD"),
        ("POST", "/", "GET"),
    ];
    for (method, path, allow) in cases {
        let mut res = app
            .client
            .request(
                awc::http::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", app.base),
            )
            .insert_header(("Authorization", format!("Bearer {}", alice.token)))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 405, "{method} {path}");
        assert_eq!(
            res.headers().get("allow").unwrap(),
            allow,
            "{method} {path}"
        );
        let body: Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
        assert_eq!(body, json!({"error": "method not allowed"}));
    }
    let r = app.request("GET", "/api/nope", None, None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "not found");
}

#[actix_web::test]
async fn head_health_answers_200_without_a_body() {
    let app = spawn_app().await;
    let request = "HEAD /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (reply, _) = exchange(&app, request.to_string(), None).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let (_, body) = reply.split_once("\r\n\r\n").expect("a complete reply");
    assert_eq!(body, "");
}

#[actix_web::test]
async fn a_body_that_trickles_past_the_timeout_gets_408() {
    let app = spawn_app_with(|c| c.server.body_timeout_secs = 1).await;
    let (alice, _) = app.init_user("alice@example.com");
    // Content-Length promises 100 bytes; a dozen arrive, then nothing
    let request = format!(
        "POST /api/workspaces HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        alice.token
    );
    let (reply, took) = exchange(&app, request, Some(" \"La")).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert_eq!(
        json_body(&reply),
        json!({"error": "request body timed out"})
    );
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    assert_eq!(app.count("SELECT count(*) FROM workspace"), 1);

    // a body that arrives in time is unaffected
    let r = app
        .post("/api/workspaces", &alice.token, json!({"name": "Lab"}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[actix_web::test]
async fn a_full_database_answers_507_and_health_says_why() {
    if common::on_postgres() {
        // `database.max_size_mb` is a quota on the SQLite file; a
        // PostgreSQL server's disk is its operator's to size, and a test
        // cannot fill it without filling the machine's disk
        return;
    }
    let app = spawn_app_with(|c| c.database.max_size_mb = 1).await;
    let (alice, _) = app.init_user("alice@example.com");
    let description = "x".repeat(200 * 1024);
    let mut full = None;
    for i in 0..20 {
        let r = add_workspace(&app, &alice.token, i, &description).await;
        if r.status != 201 {
            full = Some(r);
            break;
        }
    }
    let r = full.expect("1 MiB filled up within 20 workspaces of 200 KiB");
    assert_eq!(r.status, 507, "{:?}", r.body);
    assert_eq!(r.body, json!({"error": "the database disk is full"}));

    let health = app.request("GET", "/health", None, None).await;
    assert_eq!(health.status, 503);
    assert_eq!(
        health.body,
        json!({"status": "unavailable", "error": "the database disk is full"})
    );
    // reads still work
    let r = app.get("/api/me", &alice.token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let size = std::fs::metadata(&app.db_path).unwrap().len();
    assert!(size <= 1024 * 1024, "the file grew to {size} bytes");
}

#[actix_web::test]
async fn health_is_ok_while_writes_succeed() {
    let app = spawn_app_with(|c| c.database.max_size_mb = 64).await;
    let (alice, _) = app.init_user("alice@example.com");
    let r = app
        .post("/api/workspaces", &alice.token, json!({"name": "Lab"}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let health = app.request("GET", "/health", None, None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body, json!({"status": "ok"}));
}

#[actix_web::test]
async fn a_read_only_database_answers_503_until_health_sees_it_mended() {
    // the writer's connection, switched to query_only: every write on it
    // fails with SQLITE_READONLY, as on a file remounted read-only
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    let query_only = |on: bool| app.db.set_writer_read_only(on).unwrap();
    query_only(true);

    let mut res = app
        .client
        .post(format!("{}/api/workspaces", app.base))
        .insert_header(("Authorization", format!("Bearer {}", alice.token)))
        .send_json(&json!({"name": "Lab"}))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 503);
    assert_eq!(res.headers().get("retry-after").unwrap(), "30");
    let body: Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"error": "the database is read-only, retry later"})
    );
    let health = app.request("GET", "/health", None, None).await;
    assert_eq!(health.status, 503);
    assert_eq!(
        health.body,
        json!({"status": "unavailable", "error": "the database is read-only, retry later"})
    );
    let r = app.get("/api/workspaces", &alice.token).await;
    assert_eq!(r.status, 200, "reads go on: {:?}", r.body);

    // mended: the health check's own probe (at most one a second)
    // notices, no other write needed
    query_only(false);
    let mut health = app.request("GET", "/health", None, None).await;
    for _ in 0..30 {
        if health.status == 200 {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
        health = app.request("GET", "/health", None, None).await;
    }
    assert_eq!(health.status, 200, "{:?}", health.body);
    assert_eq!(app.count("SELECT count(*) FROM workspace"), 1);
}

/// Committed writes reach the database file itself within moments, copied
/// from the WAL beside the writer, not only once the WAL has grown to the
/// writer's own (far higher) checkpoint threshold. SQLite-specific: it
/// reads the file's size.
#[actix_web::test]
async fn committed_writes_are_checkpointed_into_the_file_in_the_background() {
    if common::on_postgres() {
        // the SQLite file's WAL checkpoints; a PostgreSQL server runs its own
        return;
    }
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    let file_size = || std::fs::metadata(&app.db_path).map_or(0, |m| m.len());
    let before = file_size();
    let description = "x".repeat(16 * 1024);
    for i in 0..40 {
        let r = add_workspace(&app, &alice.token, i, &description).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    // 40 × 16 KiB = 160 pages: far below the writer's own threshold
    assert!(
        common::eventually(5, || file_size() >= before + 640 * 1024).await,
        "the file stayed at {} bytes (was {before})",
        file_size()
    );
}
