//! Bearer-token authentication and workspace scoping (SPEC §4).

mod common;

use agenthub::store::seed::TokenKind;
use common::spawn_app;
use serde_json::json;

#[actix_web::test]
async fn missing_authorization_header_is_401() {
    let app = spawn_app().await;
    let r = app.request("GET", "/api/me", None, None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "missing authorization header");
}

#[actix_web::test]
async fn health_needs_no_token() {
    let app = spawn_app().await;
    let r = app.request("GET", "/health", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"status": "ok"}));
}

#[actix_web::test]
async fn malformed_and_unknown_tokens_are_401() {
    let app = spawn_app().await;
    for token in [
        "nonsense",
        "mul_123",
        "mul_ABCDEF0123456789ABCDEF0123456789ABCDEF01",
        "mul_0000000000000000000000000000000000000000",
        "mdt_0000000000000000000000000000000000000000",
    ] {
        let r = app.get("/api/me", token).await;
        assert_eq!(r.status, 401, "{token}");
        assert_eq!(r.error(), "invalid token", "{token}");
    }
    let r = app
        .request_with_headers(
            "GET",
            "/api/me",
            None,
            None,
            &[("Authorization", "Basic abc")],
        )
        .await;
    assert_eq!(r.status, 401);
}

#[actix_web::test]
async fn me_returns_the_token_owner() {
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    let r = app.get("/api/me", &alice.token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["id"], alice.id.as_str());
    assert_eq!(r.body["email"], "alice@example.com");
    assert_eq!(r.body["name"], "alice");
}

#[actix_web::test]
async fn tokens_are_stored_only_as_hashes() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let daemon = app
        .post(
            &format!("/api/workspaces/{ws}/daemon-tokens"),
            &alice.token,
            json!({"daemon_id": "laptop"}),
        )
        .await;
    assert_eq!(daemon.status, 201, "{:?}", daemon.body);
    let daemon_token = daemon.body["token"].as_str().unwrap().to_string();
    for (table, token) in [
        ("personal_access_token", &alice.token),
        ("daemon_token", &daemon_token),
    ] {
        let stored = app.column(&format!("SELECT token_hash FROM {table}"));
        assert!(stored
            .iter()
            .all(|h| h.len() == 64 && !h.contains(token.as_str())));
        let rows = json!(app.select(&format!("SELECT * FROM {table}"))).to_string();
        assert!(!rows.contains(&token[4..]), "{table} holds the clear token");
    }
}

#[actix_web::test]
async fn revoked_token_is_rejected() {
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    let created = app
        .post("/api/tokens", &alice.token, json!({"name": "laptop"}))
        .await;
    assert_eq!(created.status, 201);
    let second = created.body["token"].as_str().unwrap().to_string();
    assert_eq!(app.get("/api/me", &second).await.status, 200);

    let id = created.body["id"].as_str().unwrap();
    let r = app.delete(&format!("/api/tokens/{id}"), &alice.token).await;
    assert_eq!(r.status, 200);

    let r = app.get("/api/me", &second).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "token has been revoked");
    // the other token still works
    assert_eq!(app.get("/api/me", &alice.token).await.status, 200);
}

#[actix_web::test]
async fn expired_token_is_rejected() {
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    let created = app
        .post("/api/tokens", &alice.token, json!({"expires_in_days": 1}))
        .await;
    assert_eq!(created.status, 201);
    assert!(created.body["expires_at"].as_str().unwrap().ends_with('Z'));
    let token = created.body["token"].as_str().unwrap().to_string();
    assert_eq!(app.get("/api/me", &token).await.status, 200);
    app.expire_token(TokenKind::Personal, &token);
    let r = app.get("/api/me", &token).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "token has expired");
}

#[actix_web::test]
async fn expired_daemon_token_is_rejected() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let minted = app
        .post(
            &format!("/api/workspaces/{ws}/daemon-tokens"),
            &alice.token,
            json!({"daemon_id": "laptop"}),
        )
        .await;
    assert_eq!(minted.status, 201, "{:?}", minted.body);
    let token = minted.body["token"].as_str().unwrap().to_string();
    app.expire_token(TokenKind::Daemon, &token);
    // a daemon token is no PAT: user routes refuse it either way
    let r = app.get("/api/me", &token).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "token has expired");
}

#[actix_web::test]
async fn daemon_token_cannot_use_user_routes() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let minted = app
        .post(
            &format!("/api/workspaces/{ws}/daemon-tokens"),
            &alice.token,
            json!({"daemon_id": "laptop"}),
        )
        .await;
    assert_eq!(minted.status, 201);
    let token = minted.body["token"].as_str().unwrap();
    let r = app.get("/api/workspaces", token).await;
    assert_eq!(r.status, 401);
    assert!(r.error().contains("personal access token"), "{}", r.error());
}

#[actix_web::test]
async fn token_list_never_shows_tokens() {
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    let r = app.get("/api/tokens", &alice.token).await;
    assert_eq!(r.status, 200);
    let list = r.body.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].get("token").is_none());
    assert_eq!(list[0]["token_prefix"], &alice.token[..8]);
    assert_eq!(list[0]["revoked"], false);
}

#[actix_web::test]
async fn cannot_revoke_someone_elses_token() {
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    let (bob, _) = app.init_user("bob@example.com");
    let bobs = app.get("/api/tokens", &bob.token).await;
    let id = bobs.body[0]["id"].as_str().unwrap();
    let r = app.delete(&format!("/api/tokens/{id}"), &alice.token).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "token not found");
    assert_eq!(app.get("/api/me", &bob.token).await.status, 200);
    let r = app.delete("/api/tokens/123", &alice.token).await;
    assert_eq!(r.status, 400);
}

#[actix_web::test]
async fn a_user_holds_at_most_100_live_tokens() {
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    let create = |body: serde_json::Value| {
        let (app, token) = (&app, alice.token.clone());
        async move { app.post("/api/tokens", &token, body).await }
    };
    // init made the first; 99 more, one of them short-lived
    let (mut ids, mut tokens) = (Vec::new(), Vec::new());
    for i in 0..99 {
        let body = match i {
            0 => json!({"expires_in_days": 1}),
            _ => json!({}),
        };
        let r = create(body).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_string());
        tokens.push(r.body["token"].as_str().unwrap().to_string());
    }
    let before = app.dump();
    let r = create(json!({"name": "one too many"})).await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(
        r.error(),
        "you already have 100 active tokens; revoke one first"
    );
    assert_eq!(before, app.dump(), "a refused token was not stored");

    // a revoked token makes room
    let r = app
        .delete(&format!("/api/tokens/{}", ids[1]), &alice.token)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(create(json!({})).await.status, 201);
    assert_eq!(create(json!({})).await.status, 409);
    // and so does an expired one
    app.expire_token(TokenKind::Personal, &tokens[0]);
    assert_eq!(create(json!({})).await.status, 201);
    assert_eq!(create(json!({})).await.status, 409);
}
