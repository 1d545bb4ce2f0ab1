//! Agents (SPEC §3, §5).

mod common;

use agenthub::domain::Role;
use common::spawn_app;
use serde_json::json;

#[actix_web::test]
async fn create_agent_with_defaults_in_the_reference_shape() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let r = app
        .create_agent(
            &alice.token,
            &ws,
            &rt,
            json!({"name": "  Reviewer  ", "instructions": "be kind"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mut keys: Vec<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "archived_at",
            "archived_by",
            "avatar_url",
            "created_at",
            "description",
            "fallback_after_secs",
            "fallback_runtime_ids",
            "id",
            "instructions",
            "max_attempts",
            "max_concurrent_tasks",
            "name",
            "owner_id",
            "quota_failed_at",
            "runtime_config",
            "runtime_id",
            "runtime_mode",
            "skills",
            "status",
            "updated_at",
            "visibility",
            "workspace_id"
        ]
    );
    assert_eq!(r.body["name"], "Reviewer");
    assert_eq!(r.body["runtime_id"], rt.as_str());
    assert_eq!(r.body["runtime_mode"], "local");
    assert_eq!(r.body["visibility"], "private");
    assert_eq!(r.body["max_concurrent_tasks"], 6);
    assert_eq!(r.body["max_attempts"], 2);
    assert_eq!(r.body["fallback_runtime_ids"], json!([]));
    assert_eq!(r.body["fallback_after_secs"], 300);
    assert_eq!(r.body["quota_failed_at"], serde_json::Value::Null);
    assert_eq!(r.body["status"], "idle");
    assert_eq!(r.body["skills"], json!([]));
    assert_eq!(r.body["runtime_config"], json!({}));
    assert_eq!(r.body["owner_id"], alice.id.as_str());
    assert_eq!(r.body["archived_at"], json!(null));
}

#[actix_web::test]
async fn invalid_agents_are_400_never_500_and_write_nothing() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let (bob, bws) = app.init_user("bob@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let foreign = app.runtime(&bob.token, &bws, "bmbp", "claude").await;
    let cases = [
        (json!({"name": "  "}), "name is required"),
        (json!({"runtime_id": foreign}), "invalid runtime_id"),
        (json!({"runtime_id": "rt-1"}), "invalid runtime_id"),
        (
            json!({"max_concurrent_tasks": 0}),
            "max_concurrent_tasks must be between 1 and 100",
        ),
        (
            json!({"max_concurrent_tasks": 101}),
            "max_concurrent_tasks must be between 1 and 100",
        ),
        (
            json!({"visibility": "public"}),
            "visibility must be workspace or private",
        ),
        (
            json!({"status": "sleeping"}),
            "status must be idle, working, blocked, error or offline",
        ),
        (
            json!({"runtime_config": [1]}),
            "runtime_config must be an object",
        ),
    ];
    for (extra, message) in cases {
        let r = app
            .create_agent(&alice.token, &ws, &rt, extra.clone())
            .await;
        assert_eq!(r.status, 400, "{extra}");
        assert_eq!(r.error(), message, "{extra}");
    }
    let r = app
        .create_agent(
            &alice.token,
            &ws,
            &rt,
            json!({"max_concurrent_tasks": 1e30}),
        )
        .await;
    assert_eq!(r.status, 400);
    let member = app.add_user("m@example.com", Some((&ws, Role::Member)));
    let r = app.create_agent(&member.token, &ws, &rt, json!({})).await;
    assert_eq!(r.status, 403);
    assert_eq!(app.count("SELECT count(*) FROM agent"), 0);
}

#[actix_web::test]
async fn private_agents_are_seen_by_their_owner_and_managers_only() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let admin = app.add_user("admin@example.com", Some((&ws, Role::Admin)));
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    app.share_runtime(&alice.token, &rt).await;
    let private = app
        .agent(&admin.token, &ws, &rt, json!({"name": "secret"}))
        .await;
    let shared = app
        .agent(
            &admin.token,
            &ws,
            &rt,
            json!({"name": "shared", "visibility": "workspace"}),
        )
        .await;

    let names = |r: &common::Reply| -> Vec<String> {
        r.body
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect()
    };
    let path = format!("/api/agents?workspace_id={ws}");
    assert_eq!(names(&app.get(&path, &bob.token).await), ["shared"]);
    assert_eq!(
        names(&app.get(&path, &alice.token).await),
        ["secret", "shared"]
    );
    assert_eq!(
        app.get(&format!("/api/agents/{private}"), &bob.token)
            .await
            .status,
        404
    );
    assert_eq!(
        app.get(&format!("/api/agents/{shared}"), &bob.token)
            .await
            .status,
        200
    );
    let (mallory, _) = app.init_user("mallory@example.com");
    assert_eq!(
        app.get(&format!("/api/agents/{shared}"), &mallory.token)
            .await
            .status,
        404
    );
    assert_eq!(app.get(&path, &mallory.token).await.status, 404);
}

#[actix_web::test]
async fn agent_owner_or_managers_edit_an_agent() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let carol = app.add_user("carol@example.com", Some((&ws, Role::Admin)));
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let rt2 = app.runtime(&alice.token, &ws, "mbp", "codex").await;
    app.share_runtime(&alice.token, &rt).await;
    let agent = app
        .agent(&carol.token, &ws, &rt, json!({"visibility": "workspace"}))
        .await;
    // carol stays the agent's owner after losing the admin role
    let carol_m = app.member_id(&alice.token, &ws, &carol.id).await;
    let r = app
        .request(
            "PATCH",
            &format!("/api/workspaces/{ws}/members/{carol_m}"),
            Some(&alice.token),
            Some(&json!({"role": "member"}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let put = |token: String, body: serde_json::Value| {
        let app = &app;
        let agent = agent.clone();
        async move {
            app.request(
                "PUT",
                &format!("/api/agents/{agent}"),
                Some(&token),
                Some(&body.to_string()),
            )
            .await
        }
    };
    let r = put(bob.token.clone(), json!({"name": "mine now"})).await;
    assert_eq!(r.status, 403);
    let r = put(
        carol.token.clone(),
        json!({"description": "reviews PRs", "max_concurrent_tasks": 2}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["description"], "reviews PRs");
    assert_eq!(r.body["max_concurrent_tasks"], 2);
    assert_eq!(r.body["name"], "helper");
    let r = put(
        alice.token.clone(),
        json!({"runtime_id": rt2, "status": "blocked"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["runtime_id"], rt2.as_str());
    assert_eq!(r.body["status"], "blocked");
    let r = put(alice.token.clone(), json!({"max_concurrent_tasks": 500})).await;
    assert_eq!(r.status, 400);
    let r = app.get(&format!("/api/agents/{agent}"), &bob.token).await;
    assert_eq!(r.body["max_concurrent_tasks"], 2);
}

#[actix_web::test]
async fn archive_cancels_open_work_and_restore_brings_the_agent_back() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let queued = app.task(&alice.token, &agent, "one", 0).await;
    let dispatched = app.task(&alice.token, &agent, "two", 5).await;
    let claimed = app.claim(&alice.token, &rt).await;
    assert_eq!(claimed.body["task"]["id"], dispatched.as_str());
    assert_eq!(app.agent_status(&agent), "working");
    let mut events = app.state.events.subscribe(ws.parse().unwrap());

    let r = app
        .post(
            &format!("/api/agents/{agent}/archive"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["archived_at"].is_string());
    assert_eq!(r.body["archived_by"], alice.id.as_str());
    assert_eq!(r.body["status"], "idle");
    assert_eq!(app.task_status(&queued), "cancelled");
    assert_eq!(app.task_status(&dispatched), "cancelled");
    let kinds: Vec<String> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| e.kind.to_string())
        .collect();
    assert_eq!(kinds, ["task:cancelled", "task:cancelled", "agent:status"]);

    let r = app
        .post(
            &format!("/api/agents/{agent}/archive"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error(), "agent is already archived");
    let r = app
        .post(
            &format!("/api/agents/{agent}/tasks"),
            &alice.token,
            json!({"prompt": "more"}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error(), "agent is archived");

    let list = app
        .get(&format!("/api/agents?workspace_id={ws}"), &alice.token)
        .await;
    assert_eq!(list.body.as_array().unwrap().len(), 0);
    let list = app
        .get(
            &format!("/api/agents?workspace_id={ws}&include_archived=true"),
            &alice.token,
        )
        .await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);

    let r = app
        .post(
            &format!("/api/agents/{agent}/restore"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["archived_at"], json!(null));
    let r = app
        .post(
            &format!("/api/agents/{agent}/restore"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error(), "agent is not archived");
}

#[actix_web::test]
async fn queue_and_list_an_agents_tasks() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app
        .agent(&alice.token, &ws, &rt, json!({"visibility": "workspace"}))
        .await;
    let r = app
        .post(
            &format!("/api/agents/{agent}/tasks"),
            &bob.token,
            json!({"prompt": "  "}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "prompt is required");
    let r = app
        .post(
            &format!("/api/agents/{agent}/tasks"),
            &bob.token,
            json!({"prompt": "fix #12", "priority": 3, "issue_id": "GH-12"}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["status"], "queued");
    assert_eq!(r.body["priority"], 3);
    assert_eq!(r.body["issue_id"], "GH-12");
    assert_eq!(r.body["agent_id"], agent.as_str());
    assert_eq!(r.body["runtime_id"], json!(null));
    app.task(&alice.token, &agent, "second", 0).await;
    let list = app
        .get(&format!("/api/agents/{agent}/tasks"), &bob.token)
        .await;
    let prompts: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["prompt"].as_str().unwrap())
        .collect();
    assert_eq!(prompts, ["second", "fix #12"]);
}

#[actix_web::test]
async fn a_prompt_is_at_most_64_kib_and_an_issue_id_256_bytes() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let path = format!("/api/agents/{agent}/tasks");
    let before = app.dump();
    for (body, error) in [
        (
            json!({"prompt": "x".repeat(65_537)}),
            "prompt is too long (at most 65536 bytes)",
        ),
        (
            // bytes, not characters: 32,769 two-byte characters
            json!({"prompt": "é".repeat(32_769)}),
            "prompt is too long (at most 65536 bytes)",
        ),
        (
            json!({"prompt": "fix it", "issue_id": "i".repeat(257)}),
            "issue_id is too long (at most 256 bytes)",
        ),
    ] {
        let r = app.post(&path, &alice.token, body).await;
        assert_eq!(r.status, 400, "{:?}", r.body);
        assert_eq!(r.error(), error);
    }
    assert_eq!(before, app.dump(), "refused tasks wrote nothing");

    let prompt = "x".repeat(65_536);
    let r = app
        .post(
            &path,
            &alice.token,
            json!({"prompt": prompt, "issue_id": "i".repeat(256)}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["prompt"], prompt.as_str());
}

#[actix_web::test]
async fn an_agent_holds_at_most_1000_queued_tasks() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let other = app.agent(&alice.token, &ws, &rt, json!({})).await;
    for i in 0..1000 {
        app.task(&alice.token, &agent, &format!("task {i}"), 0)
            .await;
    }
    let queue = |agent: &str| {
        let path = format!("/api/agents/{agent}/tasks");
        let (app, token) = (&app, alice.token.clone());
        async move { app.post(&path, &token, json!({"prompt": "one more"})).await }
    };
    let before = app.dump();
    let r = queue(&agent).await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.error(), "agent already has 1000 queued tasks");
    assert_eq!(before, app.dump(), "a refused task wrote nothing");
    // the bound is per agent
    assert_eq!(queue(&other).await.status, 201);

    // tasks that left the queue make room
    let r = app.claim(&alice.token, &rt).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["task"]["agent_id"], agent.as_str());
    assert_eq!(queue(&agent).await.status, 201);
    assert_eq!(queue(&agent).await.status, 409);
}
