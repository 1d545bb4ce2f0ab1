//! Whose machine it is (issue: runtime consent): a runtime is private to
//! its owner until they share it, only they bind agents to a private one,
//! workspace owners and admins bind to a shared one, nobody to one without
//! an owner until a manager claims it, and bindings made before a change
//! stay as they are.

mod common;

use agenthub::domain::Role;
use common::{spawn_app, TestApp};
use serde_json::json;

/// PATCH /api/runtimes/{id} with `body` as `token`.
async fn set(app: &TestApp, token: &str, runtime: &str, body: &str) -> common::Reply {
    app.request(
        "PATCH",
        &format!("/api/runtimes/{runtime}"),
        Some(token),
        Some(body),
    )
    .await
}

/// PUT /api/agents/{id} moving the agent to `runtime`, as `token`.
async fn move_agent(app: &TestApp, token: &str, agent: &str, runtime: &str) -> common::Reply {
    app.request(
        "PUT",
        &format!("/api/agents/{agent}"),
        Some(token),
        Some(&json!({ "runtime_id": runtime }).to_string()),
    )
    .await
}

const PRIVATE: &str = "this runtime is private to its owner: only they can bind agents to it";
const SHARED: &str = "only the runtime's owner or a workspace owner or admin can bind agents to it";

#[actix_web::test]
async fn only_the_owner_binds_agents_to_a_private_runtime_and_managers_to_a_shared_one() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let adam = app.add_user("adam@example.com", Some((&ws, Role::Admin)));
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let carol = app.add_user("carol@example.com", Some((&ws, Role::Member)));
    let bobs = app.runtime(&bob.token, &ws, "bob-mbp", "claude").await;
    let carols = app.runtime(&carol.token, &ws, "carol-mbp", "claude").await;
    let listed = app.listed_runtime(&alice.token, &ws, &bobs).await;
    assert_eq!(
        listed["visibility"], "private",
        "a daemon's runtimes start private"
    );

    // private: the workspace's owner and admin are refused, so is carol
    for token in [&alice.token, &adam.token, &carol.token] {
        let r = app.create_agent(token, &ws, &bobs, json!({})).await;
        assert_eq!((r.status, r.error()), (403, PRIVATE));
    }
    assert_eq!(app.count("SELECT count(*) FROM agent"), 0);
    // bob, a plain member, creates agents on his own machine
    let r = app
        .create_agent(&bob.token, &ws, &bobs, json!({"name": "bobs"}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // and carol on hers; nobody moves her agent to bob's machine
    let carols_agent = app
        .agent(
            &carol.token,
            &ws,
            &carols,
            json!({"visibility": "workspace"}),
        )
        .await;
    for token in [&carol.token, &alice.token] {
        let r = move_agent(&app, token, &carols_agent, &bobs).await;
        assert_eq!((r.status, r.error()), (403, PRIVATE));
    }
    assert_eq!(app.agent_runtime(&carols_agent), carols);

    // only bob says who may bind to his machine: not the owner or admin
    for token in [&alice.token, &adam.token, &carol.token] {
        let r = set(&app, token, &bobs, r#"{"visibility": "workspace"}"#).await;
        assert_eq!(
            (r.status, r.error()),
            (
                403,
                "only the runtime's owner can change who may bind agents to it"
            )
        );
    }
    let r = set(&app, &bob.token, &bobs, r#"{"visibility": "workspace"}"#).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["visibility"], "workspace");
    assert_eq!(r.body["id"], bobs.as_str());

    // shared: the owner and admins bind; another member still may not
    let r = app.create_agent(&carol.token, &ws, &bobs, json!({})).await;
    assert_eq!((r.status, r.error()), (403, SHARED));
    let r = move_agent(&app, &carol.token, &carols_agent, &bobs).await;
    assert_eq!((r.status, r.error()), (403, SHARED));
    let r = app
        .create_agent(&adam.token, &ws, &bobs, json!({"name": "adams"}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let adams_agent = r.body["id"].as_str().unwrap().to_string();
    let r = move_agent(&app, &alice.token, &carols_agent, &bobs).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(app.agent_runtime(&carols_agent), bobs);

    // private again: what was bound stays bound, and its work is claimed
    let task = app.task(&adam.token, &adams_agent, "still runs", 0).await;
    let r = set(&app, &bob.token, &bobs, r#"{"visibility": "private"}"#).await;
    assert_eq!((r.status, &r.body["visibility"]), (200, &json!("private")));
    assert_eq!(app.agent_runtime(&adams_agent), bobs);
    assert_eq!(app.agent_runtime(&carols_agent), bobs);
    let claimed = app.claim(&bob.token, &bobs).await;
    assert_eq!(claimed.body["task"]["id"], task.as_str());
    // but no new binding
    let r = app.create_agent(&adam.token, &ws, &bobs, json!({})).await;
    assert_eq!((r.status, r.error()), (403, PRIVATE));
    // editing a bound agent without moving it needs no consent
    let r = app
        .request(
            "PUT",
            &format!("/api/agents/{adams_agent}"),
            Some(&adam.token),
            Some(&json!({"description": "reviews"}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[actix_web::test]
async fn a_runtime_without_an_owner_is_bindable_by_nobody_until_a_manager_claims_it() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let adam = app.add_user("adam@example.com", Some((&ws, Role::Admin)));
    let bobs = app.runtime(&bob.token, &ws, "bob-mbp", "claude").await;
    app.share_runtime(&bob.token, &bobs).await;
    // its owner's account is gone
    common::batch(
        &app.database,
        &format!("UPDATE agent_runtime SET owner_id = NULL WHERE id = '{bobs}'"),
    );
    let ownerless = "this runtime has no owner: a workspace owner or admin must claim it \
                     (POST /api/runtimes/{id}/claim) before agents are bound to it";
    for token in [&alice.token, &adam.token, &bob.token] {
        let r = app.create_agent(token, &ws, &bobs, json!({})).await;
        assert_eq!((r.status, r.error()), (403, ownerless));
    }
    let claim = |token: String| {
        let (app, bobs) = (&app, bobs.clone());
        async move {
            app.post(&format!("/api/runtimes/{bobs}/claim"), &token, json!({}))
                .await
        }
    };
    let r = claim(bob.token.clone()).await;
    assert_eq!(
        (r.status, r.error()),
        (403, "only workspace owners and admins can claim a runtime")
    );
    let r = claim(adam.token.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["owner_id"], adam.id.as_str());
    assert_eq!(
        r.body["visibility"], "workspace",
        "it stays as visible as it was"
    );
    let r = claim(alice.token.clone()).await;
    assert_eq!((r.status, r.error()), (409, "this runtime has an owner"));
    // adam's now: he binds; alice, a manager, binds to it shared
    let r = app.create_agent(&adam.token, &ws, &bobs, json!({})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = app
        .create_agent(&alice.token, &ws, &bobs, json!({"name": "h2"}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[actix_web::test]
async fn runtime_settings_refuse_what_they_do_not_keep() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    for (body, error) in [
        (
            r#"{"visibility": "public"}"#,
            "visibility must be workspace or private",
        ),
        (
            r#"{"visibility": 1}"#,
            "visibility must be workspace or private",
        ),
        (r#"{}"#, "nothing to change: give visibility, custom_name, max_concurrent_tasks or machine_max_concurrent_tasks"),
        (
            r#"{"visibility": "workspace", "colour": "red"}"#,
            "colour is not a runtime setting (visibility, custom_name, apply_to_machine, \
             max_concurrent_tasks, machine_max_concurrent_tasks)",
        ),
        (
            r#"{"custom_name": 7}"#,
            "custom_name must be a string or null",
        ),
        (
            r#"{"custom_name": "a\u0000b"}"#,
            "custom_name must not contain control characters",
        ),
        (
            r#"{"apply_to_machine": true}"#,
            "nothing to change: give visibility, custom_name, max_concurrent_tasks or machine_max_concurrent_tasks",
        ),
        (
            r#"{"visibility": "private", "apply_to_machine": true}"#,
            "apply_to_machine renames the machine's runtimes: give custom_name",
        ),
        (
            r#"{"custom_name": "x", "apply_to_machine": "yes"}"#,
            "apply_to_machine must be a boolean",
        ),
        (r#"[]"#, "the body must be a JSON object"),
        (
            r#"{"max_concurrent_tasks": 0}"#,
            "max_concurrent_tasks must be a whole number from 1 to 1000, or null for no limit",
        ),
        (
            r#"{"max_concurrent_tasks": 2.5}"#,
            "max_concurrent_tasks must be a whole number from 1 to 1000, or null for no limit",
        ),
        (
            r#"{"max_concurrent_tasks": "3"}"#,
            "max_concurrent_tasks must be a whole number from 1 to 1000, or null for no limit",
        ),
        (
            r#"{"machine_max_concurrent_tasks": 1001}"#,
            "machine_max_concurrent_tasks must be a whole number from 1 to 1000, or null for no limit",
        ),
        (
            r#"{"visibility": "workspace", "max_concurrent_tasks": -1}"#,
            "max_concurrent_tasks must be a whole number from 1 to 1000, or null for no limit",
        ),
    ] {
        let r = set(&app, &alice.token, &rt, body).await;
        assert_eq!((r.status, r.error()), (400, error), "{body}");
    }
    let long = format!(r#"{{"custom_name": "{}"}}"#, "é".repeat(101));
    let r = set(&app, &alice.token, &rt, &long).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "custom_name is too long (at most 100 characters)")
    );
    let listed = app.listed_runtime(&alice.token, &ws, &rt).await;
    assert_eq!(listed["visibility"], "private", "nothing changed");
    assert_eq!(listed["custom_name"], serde_json::Value::Null);
    assert_eq!(listed["max_concurrent_tasks"], serde_json::Value::Null);
    assert_eq!(
        listed["machine_max_concurrent_tasks"],
        serde_json::Value::Null
    );
    let missing = "00000000-0000-7000-8000-000000000000";
    let r = set(
        &app,
        &alice.token,
        missing,
        r#"{"visibility": "workspace"}"#,
    )
    .await;
    assert_eq!(r.status, 404);
}

#[actix_web::test]
async fn a_runtime_is_renamed_by_its_owner_or_a_manager_and_a_machine_at_once() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let adam = app.add_user("adam@example.com", Some((&ws, Role::Admin)));
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let carol = app.add_user("carol@example.com", Some((&ws, Role::Member)));
    let reg = app
        .register(&bob.token, &ws, "bob-mbp", &["claude", "codex"])
        .await;
    assert_eq!(reg.status, 200, "{:?}", reg.body);
    let ids: Vec<String> = reg.body["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let (claude, codex) = (&ids[0], &ids[1]);
    let other = app.runtime(&bob.token, &ws, "bob-desk", "claude").await;

    // another member may not rename bob's machine
    let r = set(&app, &carol.token, claude, r#"{"custom_name": "mine"}"#).await;
    assert_eq!(
        (r.status, r.error()),
        (
            403,
            "only the runtime's owner or a workspace owner or admin can rename it"
        )
    );
    // bob names one runtime (trimmed)
    let r = set(
        &app,
        &bob.token,
        claude,
        r#"{"custom_name": "  Bob's laptop "}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["custom_name"], "Bob's laptop");
    let daemon_name = r.body["name"].clone();
    let name_of = |id: String| {
        let (app, token, ws) = (&app, alice.token.clone(), ws.clone());
        async move { app.listed_runtime(&token, &ws, &id).await["custom_name"].clone() }
    };
    assert_eq!(name_of(codex.clone()).await, serde_json::Value::Null);
    // an admin renames the whole machine: both of its runtimes, not the
    // other machine
    let r = set(
        &app,
        &adam.token,
        codex,
        r#"{"custom_name": "ops mbp", "apply_to_machine": true}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["id"], codex.as_str());
    assert_eq!(r.body["custom_name"], "ops mbp");
    assert_eq!(name_of(claude.clone()).await, "ops mbp");
    assert_eq!(name_of(other.clone()).await, serde_json::Value::Null);
    // a re-registration keeps it, and the daemon's own name
    let reg = app
        .register(&bob.token, &ws, "bob-mbp", &["claude", "codex"])
        .await;
    assert_eq!(reg.body["runtimes"][0]["custom_name"], "ops mbp");
    assert_eq!(reg.body["runtimes"][0]["name"], daemon_name);
    // the admin cannot say who may bind to it, and a name sent with that
    // changes nothing
    let r = set(
        &app,
        &adam.token,
        claude,
        r#"{"custom_name": "x", "visibility": "workspace"}"#,
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(name_of(claude.clone()).await, "ops mbp");
    // null (or "") clears it
    let r = set(&app, &bob.token, claude, r#"{"custom_name": null}"#).await;
    assert_eq!(
        (r.status, &r.body["custom_name"]),
        (200, &serde_json::Value::Null)
    );
    let r = set(&app, &bob.token, codex, r#"{"custom_name": ""}"#).await;
    assert_eq!(
        (r.status, &r.body["custom_name"]),
        (200, &serde_json::Value::Null)
    );
}
