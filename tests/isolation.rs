//! Isolation (SPEC §4–§5): every documented route, called about workspace
//! A's objects with workspace B's credentials, answers without A's data and
//! changes nothing; a plain member of A is refused what needs an owner,
//! admin or the object's owner.

mod common;

use agenthub::domain::Role;
use common::{spawn_app, TestApp};
use serde_json::{json, Value};

/// Workspace A's objects, made through the API.
struct Fixture {
    ws: String,
    runtime: String,
    agent: String,
    task: String,
    ping: String,
    update: String,
    member: String,
    token_id: String,
    invitation: String,
    secrets: Vec<String>,
}

async fn fixture(app: &TestApp) -> (Fixture, String, String) {
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let runtime = app.runtime(&alice.token, &ws, "alice-mbp", "claude").await;
    let agent = app
        .agent(
            &alice.token,
            &ws,
            &runtime,
            json!({"visibility": "workspace", "name": "a-secret-agent"}),
        )
        .await;
    let task = app.task(&alice.token, &agent, "a secret prompt", 0).await;
    app.claim(&alice.token, &runtime).await;
    let ping = app
        .post(
            &format!("/api/runtimes/{runtime}/ping"),
            &alice.token,
            json!({}),
        )
        .await;
    let update = app
        .post(
            &format!("/api/runtimes/{runtime}/update"),
            &alice.token,
            json!({"target_version": "9"}),
        )
        .await;
    let members = app
        .get(&format!("/api/workspaces/{ws}/members"), &alice.token)
        .await;
    let member = members
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == alice.id.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token_id = app.get("/api/tokens", &alice.token).await.body[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let invitation = app
        .post(
            &format!("/api/workspaces/{ws}/members"),
            &alice.token,
            json!({"email": "carol@example.com"}),
        )
        .await;
    assert_eq!(invitation.status, 201, "{:?}", invitation.body);
    let f = Fixture {
        secrets: vec![
            ws.clone(),
            runtime.clone(),
            agent.clone(),
            task.clone(),
            alice.id.clone(),
            "alice@example.com".into(),
            "a-secret-agent".into(),
            "a secret prompt".into(),
            "alice-mbp".into(),
            "carol@example.com".into(),
        ],
        ws,
        runtime,
        agent,
        task,
        ping: ping.body["id"].as_str().unwrap().to_string(),
        update: update.body["id"].as_str().unwrap().to_string(),
        member,
        token_id,
        invitation: invitation.body["id"].as_str().unwrap().to_string(),
    };
    (f, alice.token, bob.token)
}

/// The concrete path for a documented route, about A's objects.
fn concrete(template: &str, f: &Fixture) -> String {
    let id = if template.starts_with("/api/workspaces/") {
        &f.ws
    } else if template.starts_with("/api/runtimes/")
        || template.starts_with("/api/daemon/runtimes/")
    {
        &f.runtime
    } else if template.starts_with("/api/agents/") {
        &f.agent
    } else if template.starts_with("/api/tasks/") || template.starts_with("/api/daemon/tasks/") {
        &f.task
    } else if template.starts_with("/api/tokens/") {
        &f.token_id
    } else if template.starts_with("/api/invitations/") {
        &f.invitation
    } else {
        ""
    };
    template
        .replace("{id}", id)
        .replace("{member_id}", &f.member)
        .replace("{ping_id}", &f.ping)
        .replace("{update_id}", &f.update)
        .replace("{invitation_id}", &f.invitation)
}

/// A body that would be accepted if the caller had access.
fn body_for(method: &str, template: &str, f: &Fixture) -> Option<Value> {
    let body = match (method, template) {
        ("post", "/api/daemon/register") => {
            json!({"workspace_id": f.ws, "daemon_id": "alice-mbp", "runtimes": [{"type": "claude"}]})
        }
        ("post", "/api/daemon/deregister") => json!({"runtime_ids": [f.runtime]}),
        ("post", "/api/daemon/heartbeat") => json!({"runtime_id": f.runtime}),
        ("post", p) if p.ends_with("/result") => json!({"status": "completed", "output": "x"}),
        ("post", "/api/workspaces/{id}/members") => {
            json!({"email": "mallory@example.com", "role": "owner"})
        }
        ("patch" | "put", "/api/workspaces/{id}/members/{member_id}") => json!({"role": "member"}),
        ("post", "/api/workspaces/{id}/daemon-tokens") => json!({"daemon_id": "intruder"}),
        ("post", "/api/runtimes/{id}/update") => json!({"target_version": "6.6.6"}),
        ("post", "/api/agents") => json!({"name": "intruder", "runtime_id": f.runtime}),
        ("put", "/api/agents/{id}") => json!({"name": "pwned"}),
        ("post", "/api/agents/{id}/tasks") => json!({"prompt": "exfiltrate"}),
        ("post", "/api/workspaces") | ("post", "/api/tokens") => json!({"name": "mine"}),
        ("post", "/api/daemon/tasks/{id}/fail") => json!({"error": "x"}),
        ("post", "/api/daemon/tasks/{id}/usage") => {
            json!({"usage": [{"provider": "claude", "model": "opus", "input_tokens": 5}]})
        }
        ("post", "/api/daemon/runtimes/{id}/usage") => {
            json!({"entries": [{"date": "2026-11-01", "provider": "claude", "model": "opus", "input_tokens": 5}]})
        }
        ("post", _) | ("put", _) | ("patch", _) => json!({}),
        _ => return None,
    };
    Some(body)
}

/// Routes about the caller themself or about nothing in particular.
fn is_own_or_public(method: &str, template: &str) -> bool {
    matches!(
        (method, template),
        (
            "get",
            "/health"
                | "/metrics"
                | "/api/openapi.json"
                | "/api/me"
                | "/api/tokens"
                | "/api/workspaces"
                | "/api/invitations"
        ) | ("post", "/api/tokens" | "/api/workspaces")
            | ("post", "/api/daemon/deregister")
    )
}

#[actix_web::test]
async fn another_workspaces_credentials_reach_nothing() {
    let app = spawn_app().await;
    let (f, _alice, _bob) = fixture(&app).await;
    let (mallory, mws) = app.init_user("mallory@example.com");
    let daemon = app.daemon_token(&mallory.token, &mws, "evil").await;
    let routes = app.documented_routes().await;
    assert!(routes.len() > 40);

    for (method, template) in &routes {
        let path = concrete(template, &f);
        let body = body_for(method, template, &f).map(|b| b.to_string());
        for (who, token) in [
            ("mallory's PAT", &mallory.token),
            ("mallory's daemon token", &daemon),
        ] {
            let before = app.dump();
            let reply = app
                .request_with_headers(
                    &method.to_uppercase(),
                    &path,
                    Some(token),
                    body.as_deref(),
                    &[("X-Workspace-ID", &f.ws)],
                )
                .await;
            let text = reply.body.to_string();
            if !is_own_or_public(method, template) {
                let expected: &[u16] =
                    if template.starts_with("/api/daemon/") || who.ends_with("PAT") {
                        &[404]
                    } else {
                        &[401] // a daemon token is no user credential
                    };
                assert!(
                    expected.contains(&reply.status),
                    "{method} {template} with {who}: {} {text}",
                    reply.status
                );
            } else {
                assert!(reply.status < 500, "{method} {template}: {}", reply.status);
            }
            for secret in &f.secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{method} {template} with {who} leaked {secret}: {text}"
                );
            }
            // creating one's own token or workspace is the only write allowed
            if !matches!(
                (method.as_str(), template.as_str()),
                ("post", "/api/tokens" | "/api/workspaces")
            ) {
                assert_eq!(
                    before,
                    app.dump(),
                    "{method} {template} with {who} changed the database"
                );
            }
        }
    }
    assert_eq!(app.runtime_status(&f.runtime), "online");
}

#[actix_web::test]
async fn a_plain_member_cannot_do_what_needs_an_owner_or_admin() {
    let app = spawn_app().await;
    let (f, _alice, bob) = fixture(&app).await;
    let refused = [
        (
            "DELETE",
            format!("/api/runtimes/{}", f.runtime),
            None,
            "you can only delete your own runtimes",
        ),
        (
            "POST",
            format!("/api/runtimes/{}/ping", f.runtime),
            None,
            "",
        ),
        (
            "POST",
            format!("/api/runtimes/{}/update", f.runtime),
            Some(json!({"target_version": "2"})),
            "",
        ),
        (
            "POST",
            "/api/agents".to_string(),
            Some(json!({"name": "x", "runtime_id": f.runtime})),
            "",
        ),
        (
            "PUT",
            format!("/api/agents/{}", f.agent),
            Some(json!({"name": "x"})),
            "",
        ),
        ("POST", format!("/api/agents/{}/archive", f.agent), None, ""),
        ("POST", format!("/api/agents/{}/restore", f.agent), None, ""),
        (
            "POST",
            format!("/api/workspaces/{}/members", f.ws),
            Some(json!({"email": "bob@example.com"})),
            "",
        ),
        (
            "PATCH",
            format!("/api/workspaces/{}/members/{}", f.ws, f.member),
            Some(json!({"role": "member"})),
            "",
        ),
        (
            "DELETE",
            format!("/api/workspaces/{}/members/{}", f.ws, f.member),
            None,
            "",
        ),
    ];
    let before = app.dump();
    for (method, path, body, message) in refused {
        let body = body.map(|b| b.to_string());
        let r = app
            .request_with_headers(
                method,
                &path,
                Some(&bob),
                body.as_deref(),
                &[("X-Workspace-ID", &f.ws)],
            )
            .await;
        assert_eq!(r.status, 403, "{method} {path}: {:?}", r.body);
        if !message.is_empty() {
            assert_eq!(r.error(), message);
        }
    }
    // someone else's token is not found, not forbidden
    let r = app
        .delete(&format!("/api/tokens/{}", f.token_id), &bob)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(before, app.dump());
    // while reading the workspace is fine
    for path in [
        format!("/api/runtimes?workspace_id={}", f.ws),
        format!("/api/agents/{}", f.agent),
        format!("/api/runtimes/{}/ping/{}", f.runtime, f.ping),
        format!("/api/runtimes/{}/activity", f.runtime),
    ] {
        assert_eq!(app.get(&path, &bob).await.status, 200, "{path}");
    }
}
