//! Retiring a machine (issue: whose machine is it, item 2): a runtime with
//! agents is deleted in one transaction once its owner confirms exactly
//! which agents it unbinds. The agents stay, without a runtime, with all
//! their history; their unfinished work is cancelled; nothing claims for
//! them until they are bound again.

mod common;

use agenthub::domain::Role;
use common::{spawn_app, TestApp};
use serde_json::{json, Value};

async fn unbind(app: &TestApp, token: &str, runtime: &str, body: Value) -> common::Reply {
    app.post(
        &format!("/api/runtimes/{runtime}/unbind-agents-and-delete"),
        token,
        body,
    )
    .await
}

/// The ids the 409 names under `active_agents`, sorted.
fn named(reply: &common::Reply) -> Vec<String> {
    assert_eq!(
        reply.body["code"], "runtime_has_active_agents",
        "{:?}",
        reply.body
    );
    let mut ids: Vec<String> = reply.body["active_agents"]
        .as_array()
        .expect("active_agents")
        .iter()
        .map(|a| a["id"].as_str().expect("an id").to_string())
        .collect();
    ids.sort();
    ids
}

#[actix_web::test]
async fn unbinding_a_runtimes_agents_deletes_it_and_keeps_their_history() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let (mallory, _mws) = app.init_user("mallory@example.com");
    let rt = app.runtime(&alice.token, &ws, "old-laptop", "claude").await;
    let busy = app
        .agent(&alice.token, &ws, &rt, json!({"name": "busy"}))
        .await;
    let idle = app
        .agent(&alice.token, &ws, &rt, json!({"name": "idle"}))
        .await;
    let archived = app.insert_agent(&ws, &rt, &alice.id, true);
    // history: one task done, then one dispatched and one queued
    let done = app.task(&alice.token, &busy, "done", 0).await;
    assert_eq!(
        app.claim(&alice.token, &rt).await.body["task"]["id"],
        done.as_str()
    );
    for step in ["start", "complete"] {
        let r = app
            .post(
                &format!("/api/daemon/tasks/{done}/{step}"),
                &alice.token,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{step}: {:?}", r.body);
    }
    let dispatched = app.task(&alice.token, &busy, "dispatched", 1).await;
    assert_eq!(
        app.claim(&alice.token, &rt).await.body["task"]["id"],
        dispatched.as_str()
    );
    let queued = app.task(&alice.token, &busy, "queued", 0).await;
    let mut both = vec![busy.clone(), idle.clone()];
    both.sort();

    // a plain delete names the agents in the way
    let r = app
        .delete(&format!("/api/runtimes/{rt}"), &alice.token)
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(named(&r), both);

    // refusals change nothing
    let before = app.dump();
    for (body, error) in [
        (
            json!({}),
            "expected_active_agent_ids is required: the ids of the agents to unbind",
        ),
        (
            json!({"expected_active_agent_ids": "all"}),
            "expected_active_agent_ids is required: the ids of the agents to unbind",
        ),
        (
            json!({"expected_active_agent_ids": ["not-an-id"]}),
            "expected_active_agent_ids holds an invalid agent id",
        ),
        (
            json!({"expected_active_agent_ids": [7]}),
            "expected_active_agent_ids holds an invalid agent id",
        ),
        (
            json!({"expected_active_agent_ids": [], "force": true}),
            "force is not a field of this request (expected_active_agent_ids)",
        ),
    ] {
        let r = unbind(&app, &alice.token, &rt, body.clone()).await;
        assert_eq!((r.status, r.error()), (400, error), "{body}");
    }
    let too_many: Vec<String> = (0..1001)
        .map(|i| format!("00000000-0000-7000-8000-{i:012}"))
        .collect();
    let r = unbind(
        &app,
        &alice.token,
        &rt,
        json!({"expected_active_agent_ids": too_many}),
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (400, "expected_active_agent_ids lists at most 1000 agents")
    );
    let r = unbind(
        &app,
        &bob.token,
        &rt,
        json!({"expected_active_agent_ids": both}),
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (403, "you can only delete your own runtimes")
    );
    let r = unbind(
        &app,
        &mallory.token,
        &rt,
        json!({"expected_active_agent_ids": both}),
    )
    .await;
    assert_eq!(r.status, 404);
    // a set that is not the runtime's (one missing, one too many, one
    // archived) is refused with the current one
    for expected in [
        vec![busy.clone()],
        vec![busy.clone(), idle.clone(), archived.clone()],
        vec![],
    ] {
        let r = unbind(
            &app,
            &alice.token,
            &rt,
            json!({ "expected_active_agent_ids": expected }),
        )
        .await;
        assert_eq!(r.status, 409, "{expected:?}: {:?}", r.body);
        assert_eq!(named(&r), both, "{expected:?}");
    }
    assert_eq!(before, app.dump(), "a refusal changed the database");

    // the confirmed set, in any order and repeated, does it all at once
    let r = unbind(
        &app,
        &alice.token,
        &rt,
        json!({ "expected_active_agent_ids": [idle, busy, idle] }),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, json!({"agents_unbound": 2, "tasks_cancelled": 2}));
    assert!(app.listed_runtimes(&alice.token, &ws).await.is_empty());
    for agent in [&busy, &idle] {
        let r = app.get(&format!("/api/agents/{agent}"), &alice.token).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["runtime_id"], Value::Null);
        assert_eq!(r.body["status"], "idle");
    }
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM agent WHERE id = '{archived}' AND runtime_id IS NULL"
        )),
        1,
        "the archived agent stays too"
    );
    assert_eq!(app.task_status(&done), "completed");
    assert_eq!(app.task_status(&dispatched), "cancelled");
    assert_eq!(app.task_status(&queued), "cancelled");
    let r = app
        .get(&format!("/api/agents/{busy}/tasks"), &alice.token)
        .await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(3), "{:?}", r.body);

    // an unbound agent takes no work until it is bound again
    let r = app
        .post(
            &format!("/api/agents/{busy}/tasks"),
            &alice.token,
            json!({"prompt": "more"}),
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (409, "agent has no runtime: bind it to a runtime first")
    );
    let r = app
        .request(
            "PUT",
            &format!("/api/agents/{idle}"),
            Some(&alice.token),
            Some(&json!({"description": "kept for later"}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["runtime_id"],
        Value::Null,
        "an edit keeps it unbound"
    );
    let new_rt = app.runtime(&alice.token, &ws, "new-laptop", "claude").await;
    let r = app
        .request(
            "PUT",
            &format!("/api/agents/{busy}"),
            Some(&alice.token),
            Some(&json!({ "runtime_id": new_rt }).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["runtime_id"], new_rt.as_str());
    let again = app.task(&alice.token, &busy, "again", 0).await;
    assert_eq!(
        app.claim(&alice.token, &new_rt).await.body["task"]["id"],
        again.as_str()
    );
}

#[actix_web::test]
async fn a_runtime_without_active_agents_is_unbound_with_an_empty_set() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let adam = app.add_user("adam@example.com", Some((&ws, Role::Admin)));
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let archived = app.insert_agent(&ws, &rt, &alice.id, true);
    // a workspace admin retires a member's machine too
    let r = unbind(
        &app,
        &adam.token,
        &rt,
        json!({"expected_active_agent_ids": []}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, json!({"agents_unbound": 0, "tasks_cancelled": 0}));
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM agent WHERE id = '{archived}'"
        )),
        1,
        "an archived agent is unbound, not deleted"
    );
    let r = unbind(
        &app,
        &adam.token,
        &rt,
        json!({"expected_active_agent_ids": []}),
    )
    .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
}
