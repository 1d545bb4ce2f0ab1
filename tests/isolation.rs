//! Isolation (SPEC §4–§5, §9): every documented route, called about
//! workspace A's objects with workspace B's credentials, answers without
//! A's data and changes nothing; inside one workspace, every route called
//! about one member's machine and private agent with every other
//! credential (owner, admin, another member, another member's daemon
//! token, a daemon token for another daemon id) answers as the rules say
//! and changes nothing it refuses.

mod common;

use agenthub::domain::Role;
use common::{spawn_app, TestApp, TestUser};
use serde_json::{json, Value};

/// Workspace A's objects, made through the API.
struct Fixture {
    ws: String,
    daemon_id: String,
    runtime: String,
    agent: String,
    task: String,
    /// the issue the task carries
    issue: String,
    ping: String,
    update: String,
    member: String,
    token_id: String,
    invitation: String,
    budget: String,
    webhook: String,
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
    let task = queue_with_issue(
        app,
        &alice.token,
        &agent,
        "a secret prompt",
        "A-SECRET-ISSUE",
    )
    .await;
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
    let (member, token_id, invitation) =
        member_token_and_invitation(app, &ws, &alice, &alice.token, "carol@example.com").await;
    let budget = budget(
        app,
        &alice.token,
        &ws,
        json!({"scope": "agent", "scope_id": agent, "period": "monthly", "limit_usd": 1000}),
    )
    .await;
    let (webhook, webhook_secret) = webhook(app, &alice.token, &ws).await;
    let f = Fixture {
        budget,
        webhook,
        secrets: vec![
            webhook_secret,
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
            "A-SECRET-ISSUE".into(),
        ],
        issue: "A-SECRET-ISSUE".into(),
        ws,
        daemon_id: "alice-mbp".into(),
        runtime,
        agent,
        task,
        ping: ping.body["id"].as_str().unwrap().to_string(),
        update: update.body["id"].as_str().unwrap().to_string(),
        member,
        token_id,
        invitation,
    };
    (f, alice.token, bob.token)
}

/// A budget on the workspace `ws`, set by `owner` with `body`; its id.
/// A webhook of the workspace, for an event nothing here causes (so its
/// sender never writes while a test compares the database).
async fn webhook(app: &TestApp, owner: &str, ws: &str) -> (String, String) {
    let r = app
        .request_with_headers(
            "POST",
            "/api/webhooks",
            Some(owner),
            Some(
                &json!({"url": "https://example.com/hook", "events": ["budget:exceeded"]})
                    .to_string(),
            ),
            &[("X-Workspace-ID", ws)],
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    (
        r.body["id"].as_str().unwrap().to_string(),
        r.body["secret"].as_str().unwrap().to_string(),
    )
}

async fn budget(app: &TestApp, owner: &str, ws: &str, body: Value) -> String {
    let r = app
        .request_with_headers(
            "POST",
            "/api/budgets",
            Some(owner),
            Some(&body.to_string()),
            &[("X-Workspace-ID", ws)],
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

/// Queues a task carrying `issue`; returns its id.
async fn queue_with_issue(
    app: &TestApp,
    token: &str,
    agent: &str,
    prompt: &str,
    issue: &str,
) -> String {
    let r = app
        .post(
            &format!("/api/agents/{agent}/tasks"),
            token,
            json!({"prompt": prompt, "issue_id": issue}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

/// `user`'s member id in `ws` and their first token's id, and an invitation
/// of `invitee` sent with `inviter` (an owner's token): the ids the routes
/// about members, tokens and invitations take.
async fn member_token_and_invitation(
    app: &TestApp,
    ws: &str,
    user: &TestUser,
    inviter: &str,
    invitee: &str,
) -> (String, String, String) {
    let member = app.member_id(&user.token, ws, &user.id).await;
    let token_id = app.get("/api/tokens", &user.token).await.body[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let invitation = app
        .post(
            &format!("/api/workspaces/{ws}/members"),
            inviter,
            json!({"email": invitee}),
        )
        .await;
    assert_eq!(invitation.status, 201, "{:?}", invitation.body);
    let invitation = invitation.body["id"].as_str().unwrap().to_string();
    (member, token_id, invitation)
}

/// The concrete path for a documented route, about A's objects.
fn concrete(template: &str, f: &Fixture) -> String {
    let id = if template.starts_with("/api/workspaces/")
        || template.starts_with("/api/daemon/workspaces/")
    {
        &f.ws
    } else if template.starts_with("/api/runtimes/")
        || template.starts_with("/api/daemon/runtimes/")
    {
        &f.runtime
    } else if template.starts_with("/api/agents/") {
        &f.agent
    } else if template.starts_with("/api/tasks/")
        || template.starts_with("/api/daemon/tasks/")
        // ids of things agenthub does not have: any UUID
        || template.starts_with("/api/daemon/chat-sessions/")
        || template.starts_with("/api/daemon/autopilot-runs/")
    {
        &f.task
    } else if template.starts_with("/api/tokens/") {
        &f.token_id
    } else if template.starts_with("/api/invitations/") {
        &f.invitation
    } else if template.starts_with("/api/budgets/") {
        &f.budget
    } else if template.starts_with("/api/webhooks/") {
        &f.webhook
    } else {
        ""
    };
    let path = template
        .replace("{id}", id)
        .replace("{member_id}", &f.member)
        .replace("{task_id}", &f.task)
        .replace("{issue_id}", &f.issue)
        .replace("{ping_id}", &f.ping)
        .replace("{update_id}", &f.update)
        .replace("{invitation_id}", &f.invitation);
    // the daemon socket names its runtimes in the query
    if template == "/api/daemon/ws" {
        return format!("{path}?runtime_ids={}", f.runtime);
    }
    path
}

/// A body that would be accepted if the caller had access.
fn body_for(method: &str, template: &str, f: &Fixture) -> Option<Value> {
    let body = match (method, template) {
        ("post", "/api/daemon/register") => {
            json!({"workspace_id": f.ws, "daemon_id": f.daemon_id, "runtimes": [{"type": "claude"}]})
        }
        ("post", "/api/daemon/deregister") => json!({"runtime_ids": [f.runtime]}),
        ("post", "/api/daemon/tasks/claim") => {
            json!({"daemon_id": f.daemon_id, "runtime_ids": [f.runtime], "max_tasks": 5})
        }
        ("post", "/api/daemon/heartbeat") => json!({"runtime_id": f.runtime}),
        ("post", p) if p.ends_with("/result") => json!({"status": "completed", "output": "x"}),
        ("post", "/api/workspaces/{id}/members") => {
            json!({"email": "mallory@example.com", "role": "owner"})
        }
        ("patch" | "put", "/api/workspaces/{id}/members/{member_id}") => json!({"role": "member"}),
        ("post", "/api/workspaces/{id}/daemon-tokens") => json!({"daemon_id": "intruder"}),
        ("post", "/api/runtimes/{id}/update") => json!({"target_version": "6.6.6"}),
        ("patch", "/api/runtimes/{id}") => json!({"visibility": "private"}),
        ("post", "/api/runtimes/{id}/unbind-agents-and-delete") => {
            json!({"expected_active_agent_ids": []})
        }
        ("post", "/api/agents") => json!({"name": "intruder", "runtime_id": f.runtime}),
        ("put", "/api/agents/{id}") => json!({"name": "pwned"}),
        ("post", "/api/agents/{id}/tasks") => json!({"prompt": "exfiltrate"}),
        ("post", "/api/workspaces") | ("post", "/api/tokens") => json!({"name": "mine"}),
        ("post", "/api/daemon/tasks/{id}/fail") => json!({"error": "x"}),
        ("post", "/api/budgets") => {
            json!({"scope": "workspace", "period": "daily", "limit_usd": 0.01})
        }
        ("put", "/api/budgets/{id}") => json!({"limit_usd": 0.01}),
        ("post", "/api/webhooks") => {
            json!({"url": "https://example.com/intruder", "events": ["task:failed"]})
        }
        ("patch" | "put", "/api/workspaces/{id}") => json!({"timezone": "Asia/Kolkata"}),
        ("post", "/api/daemon/tasks/{id}/usage") => {
            json!({"usage": [{"provider": "claude", "model": "opus", "input_tokens": 5}]})
        }
        ("post", "/api/daemon/tasks/{id}/session") => {
            json!({"session_id": "s-1", "work_dir": "/w/t"})
        }
        ("post", "/api/daemon/tasks/{id}/cancel-ack") => json!({"branch_name": "b"}),
        ("post", "/api/daemon/workspaces/{id}/issues/gc-check") => {
            json!({"issue_ids": [f.issue]})
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
            | ("post", "/api/daemon/deregister" | "/api/daemon/tasks/claim")
            // the caller's own workspaces, never anyone else's
            | ("get", "/api/daemon/workspaces")
            // the caller's own token
            | ("post", "/api/tokens/current/renew")
            // the same answer for everyone: agenthub has none
            | (
                "get",
                "/api/daemon/chat-sessions/{id}/gc-check" | "/api/daemon/autopilot-runs/{id}/gc-check"
            )
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

/// The credentials inside one workspace, aimed at bob's machine.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Owner,
    Admin,
    /// carol, another plain member
    Member,
    /// carol's daemon token, minted for her own machine
    OthersDaemon,
    /// bob's own daemon token for another of his machines
    OtherDaemonId,
}

impl Who {
    fn is_pat(self) -> bool {
        matches!(self, Who::Owner | Who::Admin | Who::Member)
    }
    fn is_manager(self) -> bool {
        matches!(self, Who::Owner | Who::Admin)
    }
}

/// What a route must answer: a refusal (nothing changes), a read that
/// succeeds, or a write the caller is entitled to (tested elsewhere, not
/// run here so the fixture stays intact).
#[derive(Debug, PartialEq)]
enum Expect {
    Refused(u16),
    Reads,
    Entitled,
}

/// The rules of SPEC §9, route by route.
fn expected(method: &str, template: &str, who: Who) -> Expect {
    use Expect::*;
    let public = matches!(template, "/health" | "/metrics" | "/api/openapi.json");
    if public {
        return Reads;
    }
    if template == "/api/events" {
        return Entitled; // a stream: tests/events.rs
    }
    if template == "/api/tokens/current/renew" {
        return Reads; // the caller's own token, far from expiry here
    }
    if let Some(daemon_route) = template.strip_prefix("/api/daemon/") {
        return match (method, daemon_route) {
            // bob's daemon_id: owned by bob, so nobody else may re-register it
            ("post", "register") if who.is_pat() => Refused(409),
            ("post", "register") => Refused(403),
            // unreachable ids are skipped: nothing changes, nothing handed out
            ("post", "deregister") => Reads,
            ("post", "tasks/claim") if who.is_pat() => Reads,
            // a daemon token claims for its own daemon_id only
            ("post", "tasks/claim") => Refused(403),
            // each credential lists its own workspaces (here: the same one)
            ("get", "workspaces") => Reads,
            // the workspace's (empty) lists; issues only as the caller's
            // own runtimes know them, so bob's is not found
            ("get", "workspaces/{id}/repos" | "workspaces/{id}/runtime-profiles") => Reads,
            ("post", "workspaces/{id}/issues/gc-check") => Reads,
            ("get", "chat-sessions/{id}/gc-check" | "autopilot-runs/{id}/gc-check") => Reads,
            // refused before the upgrade, so no WebSocket headers are needed
            // to see it (the owner's plain GET is a 400: tests/daemon_ws.rs)
            ("get", "ws") => Refused(404),
            // a daemon acts for its owner only; managers included
            _ => Refused(404),
        };
    }
    if !who.is_pat() {
        return Refused(401);
    }
    let member = who == Who::Member;
    match (method, template) {
        ("get", "/api/me" | "/api/tokens" | "/api/workspaces" | "/api/invitations") => Reads,
        // an invitation is its invitee's to answer, and nobody here is
        (_, t) if t.starts_with("/api/invitations/{id}") => Refused(404),
        (_, t) if t.starts_with("/api/workspaces/{id}/invitations") && member => Refused(403),
        ("delete", t) if t.starts_with("/api/workspaces/{id}/invitations") => Entitled,
        ("post", "/api/tokens" | "/api/workspaces") => Entitled,
        ("post", "/api/workspaces/{id}/daemon-tokens") => Entitled,
        // bob's token is nobody else's to revoke
        ("delete", "/api/tokens/{id}") => Refused(404),
        ("get", t) if t.starts_with("/api/workspaces/{id}") => Reads,
        // the workspace's settings are its managers' to change
        ("patch" | "put", "/api/workspaces/{id}") if member => Refused(403),
        ("patch" | "put", "/api/workspaces/{id}") => Entitled,
        // budgets: the workspace's to read, its managers' to set
        ("get", "/api/budgets") => Reads,
        (_, t) if t.starts_with("/api/budgets") && member => Refused(403),
        (_, t) if t.starts_with("/api/budgets") => Entitled,
        // webhooks: the workspace's managers' only, to read as to write
        (_, t) if t.starts_with("/api/webhooks") && member => Refused(403),
        (_, t) if t.starts_with("/api/webhooks") => Entitled,
        (_, t) if t.starts_with("/api/workspaces/{id}/members") && member => Refused(403),
        (_, t) if t.starts_with("/api/workspaces/{id}/members") => Entitled,
        ("get", "/api/runtimes" | "/api/agents" | "/api/usage/daily" | "/api/usage/summary") => {
            Reads
        }
        // workspace pages; another member's private agents fold into one
        // row (tests/costs.rs)
        ("get", t) if t.starts_with("/api/dashboard/") => Reads,
        ("get", t) if t.starts_with("/api/runtimes/{id}") => Reads,
        // who may bind agents to bob's machine is bob's to say, not even a
        // manager's
        ("patch", "/api/runtimes/{id}") => Refused(403),
        // a manager takes a runtime that has no owner; bob's has one
        ("post", "/api/runtimes/{id}/claim") if member => Refused(403),
        ("post", "/api/runtimes/{id}/claim") => Refused(409),
        // bob's machine: only bob or a manager may delete, ping or update it
        (_, t) if t.starts_with("/api/runtimes/{id}") && member => Refused(403),
        (_, t) if t.starts_with("/api/runtimes/{id}") => Entitled,
        // prices: the workspace's to read, its managers' to set
        ("get", "/api/pricing") => Reads,
        (_, "/api/pricing/overrides") if member => Refused(403),
        (_, "/api/pricing/overrides") => Entitled,
        ("post", "/api/agents") if member => Refused(403),
        ("post", "/api/agents") => Entitled,
        // the private agent (and its tasks) does not exist for carol
        (_, t)
            if (t.starts_with("/api/agents/{id}") || t.starts_with("/api/tasks/{id}"))
                && member =>
        {
            Refused(404)
        }
        ("get", t) if t.starts_with("/api/agents/{id}") => Reads,
        (_, t) if t.starts_with("/api/agents/{id}") || t.starts_with("/api/tasks/{id}") => {
            assert!(who.is_manager());
            Entitled
        }
        _ => panic!("no rule for {method} {template}: add one"),
    }
}

#[actix_web::test]
async fn inside_a_workspace_nobody_acts_for_another_members_machine() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let adam = app.add_user("adam@example.com", Some((&ws, Role::Admin)));
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let carol = app.add_user("carol@example.com", Some((&ws, Role::Member)));
    let runtime = app.runtime(&bob.token, &ws, "bob-mbp", "claude").await;
    let bobs_daemon = app.daemon_token(&bob.token, &ws, "bob-mbp").await;
    app.runtime(&carol.token, &ws, "carol-mbp", "claude").await;
    let carols_daemon = app.daemon_token(&carol.token, &ws, "carol-mbp").await;
    let bobs_other = app.daemon_token(&bob.token, &ws, "bob-laptop").await;
    // bob lets the managers bind agents to his machine
    app.share_runtime(&bob.token, &runtime).await;
    // a private agent on bob's machine, with work dispatched to it
    let agent = app
        .agent(
            &alice.token,
            &ws,
            &runtime,
            json!({"name": "a-private-agent", "instructions": "private instructions"}),
        )
        .await;
    let task = queue_with_issue(&app, &alice.token, &agent, "a private prompt", "BOB-1").await;
    let claimed = app.claim(&bobs_daemon, &runtime).await;
    assert_eq!(claimed.body["task"]["id"], task.as_str());
    let ping = app
        .post(
            &format!("/api/runtimes/{runtime}/ping"),
            &bob.token,
            json!({}),
        )
        .await;
    assert_eq!(ping.status, 200);
    let update = app
        .post(
            &format!("/api/runtimes/{runtime}/update"),
            &bob.token,
            json!({"target_version": "2"}),
        )
        .await;
    assert_eq!(update.status, 200);
    let (member, token_id, invitation) =
        member_token_and_invitation(&app, &ws, &bob, &alice.token, "dave@example.com").await;
    let budget = budget(
        &app,
        &alice.token,
        &ws,
        json!({"scope": "member", "scope_id": bob.id, "period": "daily", "limit_usd": 5}),
    )
    .await;
    let (webhook, webhook_secret) = webhook(&app, &alice.token, &ws).await;
    let f = Fixture {
        budget,
        webhook,
        invitation,
        ws: ws.clone(),
        daemon_id: "bob-mbp".into(),
        runtime: runtime.clone(),
        agent: agent.clone(),
        task: task.clone(),
        issue: "BOB-1".into(),
        ping: ping.body["id"].as_str().unwrap().to_string(),
        update: update.body["id"].as_str().unwrap().to_string(),
        member,
        token_id,
        secrets: vec![
            webhook_secret,
            "a-private-agent".into(),
            "private instructions".into(),
            "a private prompt".into(),
        ],
    };
    let credentials = [
        (Who::Owner, alice.token.clone()),
        (Who::Admin, adam.token.clone()),
        (Who::Member, carol.token.clone()),
        (Who::OthersDaemon, carols_daemon),
        (Who::OtherDaemonId, bobs_other),
    ];
    let routes = app.documented_routes().await;
    let mut refused = 0;
    for (method, template) in &routes {
        let path = concrete(template, &f);
        let body = body_for(method, template, &f).map(|b| b.to_string());
        for (who, token) in &credentials {
            let expect = expected(method, template, *who);
            if expect == Expect::Entitled {
                continue;
            }
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
            match expect {
                Expect::Refused(status) => {
                    refused += 1;
                    assert_eq!(
                        reply.status, status,
                        "{method} {template} as {who:?}: {text}"
                    );
                }
                _ => assert!(
                    (200..300).contains(&reply.status),
                    "{method} {template} as {who:?}: {} {text}",
                    reply.status
                ),
            }
            if !who.is_manager() {
                for secret in &f.secrets {
                    assert!(
                        !text.contains(secret.as_str()),
                        "{method} {template} as {who:?} leaked {secret}: {text}"
                    );
                }
            }
            assert_eq!(
                before,
                app.dump(),
                "{method} {template} as {who:?} changed the database"
            );
        }
    }
    assert!(refused > 100, "only {refused} refusals checked");
    // bob's machine is still bob's, online, with its task dispatched
    let row = app.listed_runtime(&bob.token, &ws, &runtime).await;
    assert_eq!(row["owner_id"], bob.id.as_str());
    assert_eq!(row["status"], "online");
    assert_eq!(app.task_status(&task), "dispatched");
    // while bob's own daemon token does everything the daemon needs
    let r = app
        .post(
            "/api/daemon/heartbeat",
            &bobs_daemon,
            json!({"runtime_id": runtime}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["pending_ping"]["id"], f.ping.as_str());
    let r = app
        .post(
            &format!("/api/daemon/tasks/{task}/start"),
            &bobs_daemon,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
}
