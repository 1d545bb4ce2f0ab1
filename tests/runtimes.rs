//! The runtime registry: list, delete, ping, update (SPEC §5).

mod common;

use agenthub::domain::{Role, TaskId};
use agenthub::store::{agents, seed};
use common::{parse_id, spawn_app};
use serde_json::{json, Value};

/// A heartbeat reply as the April 2026 daemon reads it: without the
/// `runtime_id` and `server_capabilities` today's daemon is sent too, and
/// the `active_tasks` a runtime coming back online is sent (none here: no
/// task was claimed).
fn april(reply: &Value) -> Value {
    let mut reply = reply.clone();
    if let Some(fields) = reply.as_object_mut() {
        fields.remove("runtime_id");
        fields.remove("server_capabilities");
        if let Some(tasks) = fields.remove("active_tasks") {
            assert_eq!(tasks, json!([]));
        }
    }
    reply
}

#[actix_web::test]
async fn list_is_oldest_first_and_filters_by_owner() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let a1 = app.runtime(&alice.token, &ws, "a-mbp", "claude").await;
    let b1 = app.runtime(&bob.token, &ws, "b-mbp", "claude").await;
    let a2 = app.runtime(&alice.token, &ws, "a-mbp", "codex").await;

    let r = app
        .get(&format!("/api/runtimes?workspace_id={ws}"), &alice.token)
        .await;
    assert_eq!(r.status, 200);
    let ids: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a1.as_str(), b1.as_str(), a2.as_str()]);

    let r = app
        .request_with_headers(
            "GET",
            "/api/runtimes?owner=me",
            Some(&bob.token),
            None,
            &[("X-Workspace-ID", &ws)],
        )
        .await;
    assert_eq!(r.status, 200);
    let ids: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [b1.as_str()]);
    let r = app
        .get(
            &format!("/api/runtimes?workspace_id={ws}&owner=bob"),
            &alice.token,
        )
        .await;
    assert_eq!(r.status, 400);
}

#[actix_web::test]
async fn workspace_scoping_answers_400_and_404_as_specified() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let (mallory, _) = app.init_user("mallory@example.com");
    app.runtime(&alice.token, &ws, "mbp", "claude").await;

    let r = app.get("/api/runtimes", &alice.token).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "workspace_id is required");

    let r = app
        .get("/api/runtimes?workspace_id=nope", &alice.token)
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.error().starts_with("invalid workspace_id"),
        "{}",
        r.error()
    );
    let r = app
        .request_with_headers(
            "GET",
            "/api/runtimes",
            Some(&alice.token),
            None,
            &[("X-Workspace-ID", "1234")],
        )
        .await;
    assert_eq!(r.status, 400);

    let r = app
        .get(&format!("/api/runtimes?workspace_id={ws}"), &mallory.token)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "workspace not found");

    // the header wins over the query
    let mallorys_ws = app.get("/api/workspaces", &mallory.token).await.body[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .request_with_headers(
            "GET",
            &format!("/api/runtimes?workspace_id={mallorys_ws}"),
            Some(&alice.token),
            None,
            &[("X-Workspace-ID", &ws)],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_array().unwrap().len(), 1);

    // a daemon token is not a user credential
    let token = app.daemon_token(&alice.token, &ws, "mbp").await;
    let r = app
        .get(&format!("/api/runtimes?workspace_id={ws}"), &token)
        .await;
    assert_eq!(r.status, 401);
}

#[actix_web::test]
async fn member_deletes_own_runtime_but_not_someone_elses() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let admin = app.add_user("admin@example.com", Some((&ws, Role::Admin)));
    let alices = app.runtime(&alice.token, &ws, "a", "claude").await;
    let bobs = app.runtime(&bob.token, &ws, "b", "claude").await;
    let bobs2 = app.runtime(&bob.token, &ws, "b", "codex").await;

    let r = app
        .delete(&format!("/api/runtimes/{alices}"), &bob.token)
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error(), "you can only delete your own runtimes");
    let r = app
        .delete(&format!("/api/runtimes/{bobs}"), &bob.token)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"status": "ok"}));
    // owners and admins delete any runtime
    assert_eq!(
        app.delete(&format!("/api/runtimes/{bobs2}"), &admin.token)
            .await
            .status,
        200
    );
    assert_eq!(app.count("SELECT count(*) FROM agent_runtime"), 1);

    let (mallory, _) = app.init_user("mallory@example.com");
    let r = app
        .delete(&format!("/api/runtimes/{alices}"), &mallory.token)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "runtime not found");
    let r = app.delete("/api/runtimes/not-an-id", &alice.token).await;
    assert_eq!(r.status, 400);
    assert_eq!(app.count("SELECT count(*) FROM agent_runtime"), 1);
}

#[actix_web::test]
async fn delete_is_409_with_an_active_agent_and_succeeds_after_archiving() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app.insert_agent(&ws, &rt, &alice.id, false);
    let archived = app.insert_agent(&ws, &rt, &alice.id, true);
    let (workspace, done_by, on) = (parse_id(&ws), parse_id(&archived), parse_id(&rt));
    app.arrange(move |conn| {
        let at = "2026-01-01T00:00:00.000Z".parse().unwrap();
        seed::finished_task(conn, TaskId::new(), workspace, done_by, on, at)
    });
    let mut events = app.state.events.subscribe(ws.parse().unwrap());

    let r = app
        .delete(&format!("/api/runtimes/{rt}"), &alice.token)
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.error(),
        "cannot delete runtime: it has active agents bound to it. Archive or reassign the agents first."
    );
    // what to resolve: the active agent by id and name, not the archived one
    assert_eq!(r.body["code"], "runtime_has_active_agents");
    let name = app.agent_row(&agent).name;
    assert_eq!(
        r.body["active_agents"],
        serde_json::json!([{"id": agent, "name": name}])
    );
    assert_eq!(app.count("SELECT count(*) FROM agent"), 2);

    // archived in the store: the archive route would publish an event of its own
    let (id, by) = (parse_id(&agent), parse_id(&alice.id));
    app.arrange(move |conn| agents::set_archived(conn, id, Some(by)).map(drop));
    let r = app
        .delete(&format!("/api/runtimes/{rt}"), &alice.token)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(app.count("SELECT count(*) FROM agent"), 0);
    assert_eq!(app.count("SELECT count(*) FROM agent_runtime"), 0);
    // the task history stays
    assert_eq!(
        app.count(
            "SELECT count(*) FROM agent_task_queue WHERE runtime_id IS NULL AND agent_id IS NULL"
        ),
        1
    );

    let event = events.try_recv().expect("delete event published");
    assert_eq!(event.kind, "daemon:register");
    assert_eq!(event.workspace_id.to_string(), ws);
    assert_eq!(event.payload()["action"], "delete");
    assert_eq!(event.payload()["runtime_id"], rt.as_str());
}

#[actix_web::test]
async fn ping_round_trip_through_heartbeat() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let daemon = app.daemon_token(&alice.token, &ws, "mbp").await;

    let ping = app
        .post(&format!("/api/runtimes/{rt}/ping"), &alice.token, json!({}))
        .await;
    assert_eq!(ping.status, 200);
    assert_eq!(ping.body["status"], "pending");
    assert_eq!(ping.body["runtime_id"], rt.as_str());
    for key in [
        "id",
        "output",
        "error",
        "duration_ms",
        "created_at",
        "updated_at",
    ] {
        assert!(ping.body.get(key).is_some(), "{key}");
    }
    let id = ping.body["id"].as_str().unwrap();

    let hb = app
        .post("/api/daemon/heartbeat", &daemon, json!({"runtime_id": rt}))
        .await;
    assert_eq!(
        april(&hb.body),
        json!({"status": "ok", "pending_ping": {"id": id}})
    );
    // handed over once
    let hb = app
        .post("/api/daemon/heartbeat", &daemon, json!({"runtime_id": rt}))
        .await;
    assert_eq!(april(&hb.body), json!({"status": "ok"}));
    let r = app
        .get(&format!("/api/runtimes/{rt}/ping/{id}"), &alice.token)
        .await;
    assert_eq!(r.body["status"], "running");

    let r = app
        .post(
            &format!("/api/daemon/runtimes/{rt}/ping/{id}/result"),
            &daemon,
            json!({"status": "completed", "output": "pong", "duration_ms": 812}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .get(&format!("/api/runtimes/{rt}/ping/{id}"), &alice.token)
        .await;
    assert_eq!(r.body["status"], "completed");
    assert_eq!(r.body["output"], "pong");
    assert_eq!(r.body["duration_ms"], 812);

    // a second result for a finished ping is refused
    let r = app
        .post(
            &format!("/api/daemon/runtimes/{rt}/ping/{id}/result"),
            &daemon,
            json!({"status": "failed"}),
        )
        .await;
    assert_eq!(r.status, 409);
    let r = app
        .post(
            &format!("/api/daemon/runtimes/{rt}/ping/{id}/result"),
            &daemon,
            json!({"status": "done"}),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[actix_web::test]
async fn ping_permissions() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let admin = app.add_user("admin@example.com", Some((&ws, Role::Admin)));
    let (mallory, _) = app.init_user("mallory@example.com");
    let alices = app.runtime(&alice.token, &ws, "a", "claude").await;
    let bobs = app.runtime(&bob.token, &ws, "b", "claude").await;

    let r = app
        .post(
            &format!("/api/runtimes/{alices}/ping"),
            &bob.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .post(
            &format!("/api/runtimes/{alices}/update"),
            &bob.token,
            json!({"target_version": "2"}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        app.post(&format!("/api/runtimes/{bobs}/ping"), &bob.token, json!({}))
            .await
            .status,
        200
    );
    let ping = app
        .post(
            &format!("/api/runtimes/{alices}/ping"),
            &admin.token,
            json!({}),
        )
        .await;
    assert_eq!(ping.status, 200);
    let id = ping.body["id"].as_str().unwrap();

    // any member reads it; another workspace's member does not
    assert_eq!(
        app.get(&format!("/api/runtimes/{alices}/ping/{id}"), &bob.token)
            .await
            .status,
        200
    );
    let r = app
        .get(&format!("/api/runtimes/{alices}/ping/{id}"), &mallory.token)
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .post(
            &format!("/api/runtimes/{alices}/ping"),
            &mallory.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404);

    // the ping belongs to alice's runtime, not bob's
    let r = app
        .get(&format!("/api/runtimes/{bobs}/ping/{id}"), &bob.token)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "ping not found");
    let r = app
        .post(
            &format!("/api/daemon/runtimes/{bobs}/ping/{id}/result"),
            &bob.token,
            json!({"status": "completed"}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .get(&format!("/api/runtimes/{alices}/ping/{id}"), &alice.token)
        .await;
    assert_eq!(r.body["status"], "pending");
}

#[actix_web::test]
async fn pings_time_out_after_60_seconds() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let pending = app
        .post(&format!("/api/runtimes/{rt}/ping"), &alice.token, json!({}))
        .await;
    let running = app
        .post(&format!("/api/runtimes/{rt}/ping"), &alice.token, json!({}))
        .await;
    app.post(
        "/api/daemon/heartbeat",
        &alice.token,
        json!({"runtime_id": rt}),
    )
    .await;

    app.age_probes(59);
    for p in [&pending, &running] {
        let id = p.body["id"].as_str().unwrap();
        let r = app
            .get(&format!("/api/runtimes/{rt}/ping/{id}"), &alice.token)
            .await;
        assert_ne!(r.body["status"], "timeout");
    }
    app.age_probes(2);
    for p in [&pending, &running] {
        let id = p.body["id"].as_str().unwrap();
        let r = app
            .get(&format!("/api/runtimes/{rt}/ping/{id}"), &alice.token)
            .await;
        assert_eq!(r.body["status"], "timeout");
        let r = app
            .post(
                &format!("/api/daemon/runtimes/{rt}/ping/{id}/result"),
                &alice.token,
                json!({"status": "completed"}),
            )
            .await;
        assert_eq!(r.status, 409);
    }
    // a timed-out ping is not handed to the daemon any more
    let hb = app
        .post(
            "/api/daemon/heartbeat",
            &alice.token,
            json!({"runtime_id": rt}),
        )
        .await;
    assert_eq!(april(&hb.body), json!({"status": "ok"}));
}

#[actix_web::test]
async fn one_pending_update_per_runtime_with_a_120_second_timeout() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let path = format!("/api/runtimes/{rt}/update");

    let r = app.post(&path, &alice.token, json!({})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "target_version is required");
    let first = app
        .post(&path, &alice.token, json!({"target_version": "1.4.0"}))
        .await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body["status"], "pending");
    assert_eq!(first.body["target_version"], "1.4.0");
    let id = first.body["id"].as_str().unwrap();
    let r = app
        .post(&path, &alice.token, json!({"target_version": "1.5.0"}))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error(), "an update is already pending for this runtime");

    let hb = app
        .post(
            "/api/daemon/heartbeat",
            &alice.token,
            json!({"runtime_id": rt}),
        )
        .await;
    assert_eq!(
        hb.body["pending_update"],
        json!({"id": id, "target_version": "1.4.0"})
    );
    // still running: still one at a time, even past a ping's 60 s
    app.age_probes(100);
    assert_eq!(
        app.post(&path, &alice.token, json!({"target_version": "1.5.0"}))
            .await
            .status,
        409
    );
    let r = app.get(&format!("{path}/{id}"), &alice.token).await;
    assert_eq!(r.body["status"], "running");

    app.age_probes(21);
    let r = app.get(&format!("{path}/{id}"), &alice.token).await;
    assert_eq!(r.body["status"], "timeout");
    let second = app
        .post(&path, &alice.token, json!({"target_version": "1.5.0"}))
        .await;
    assert_eq!(second.status, 200);
    let id2 = second.body["id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/api/daemon/runtimes/{rt}/update/{id2}/result"),
            &alice.token,
            json!({"status": "completed", "output": "updated to 1.5.0"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "completed");
}

#[actix_web::test]
async fn pings_kept_per_runtime_are_bounded() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let other = app.runtime(&alice.token, &ws, "mbp", "codex").await;
    let ping = |runtime: &str| {
        let path = format!("/api/runtimes/{runtime}/ping");
        let (app, token) = (&app, alice.token.clone());
        async move { app.post(&path, &token, json!({})).await }
    };
    let mut ids = Vec::new();
    for _ in 0..20 {
        let r = ping(&rt).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_string());
    }
    // twenty open pings: the daemon is not answering, so no more are queued
    let r = ping(&rt).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.error(), "too many pings pending for this runtime");
    // the bound is per runtime
    assert_eq!(ping(&other).await.status, 200);

    // once one has finished, it makes room for a new one and is forgotten
    let hb = app
        .post(
            "/api/daemon/heartbeat",
            &alice.token,
            json!({"runtime_id": rt}),
        )
        .await;
    let oldest = hb.body["pending_ping"]["id"].as_str().unwrap().to_string();
    assert_eq!(oldest, ids[0]);
    let r = app
        .post(
            &format!("/api/daemon/runtimes/{rt}/ping/{oldest}/result"),
            &alice.token,
            json!({"status": "completed", "output": "pong"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(ping(&rt).await.status, 200);
    let r = app
        .get(&format!("/api/runtimes/{rt}/ping/{oldest}"), &alice.token)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "ping not found");
    let r = app
        .get(&format!("/api/runtimes/{rt}/ping/{}", ids[1]), &alice.token)
        .await;
    assert_eq!(r.body["status"], "pending");
    assert_eq!(ping(&rt).await.status, 429);
}

#[actix_web::test]
async fn a_daemons_ping_output_and_error_are_kept_up_to_8_kib() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let ping = app
        .post(&format!("/api/runtimes/{rt}/ping"), &alice.token, json!({}))
        .await;
    assert_eq!(ping.status, 200);
    let id = ping.body["id"].as_str().unwrap();
    let hb = app
        .post(
            "/api/daemon/heartbeat",
            &alice.token,
            json!({"runtime_id": rt}),
        )
        .await;
    assert_eq!(hb.body["pending_ping"]["id"], id);

    // two-byte characters, so a cut at 8 KiB would split one
    let output = "é".repeat(400_000);
    let error = "x".repeat(100_000);
    let r = app
        .post(
            &format!("/api/daemon/runtimes/{rt}/ping/{id}/result"),
            &alice.token,
            json!({"status": "failed", "output": output, "error": error}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let marker = "\n[truncated: longer than 8 KiB]";
    let r = app
        .get(&format!("/api/runtimes/{rt}/ping/{id}"), &alice.token)
        .await;
    assert_eq!(r.body["status"], "failed");
    for (field, full, unit) in [("output", &output, "é"), ("error", &error, "x")] {
        let kept = r.body[field].as_str().unwrap();
        assert!(kept.len() <= 8 * 1024, "{field}: {} bytes", kept.len());
        assert!(kept.len() > 8 * 1024 - 64, "{field}: {} bytes", kept.len());
        let body = kept.strip_suffix(marker).expect("a visible marker");
        assert!(full.starts_with(body));
        assert_eq!(body.replace(unit, ""), "", "{field}");
    }
}

#[actix_web::test]
async fn a_target_version_is_at_most_128_bytes() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let path = format!("/api/runtimes/{rt}/update");
    let r = app
        .post(
            &path,
            &alice.token,
            json!({"target_version": "1".repeat(129)}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.error(), "target_version is too long (at most 128 bytes)");
    // nothing was queued: the daemon hears of no update
    let hb = app
        .post(
            "/api/daemon/heartbeat",
            &alice.token,
            json!({"runtime_id": rt}),
        )
        .await;
    assert_eq!(april(&hb.body), json!({"status": "ok"}));

    let version = "1".repeat(128);
    let r = app
        .post(&path, &alice.token, json!({"target_version": version}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["target_version"], version.as_str());
}

/// Registers `n` runtimes for `token`'s user (100 providers per daemon_id)
/// and returns their ids.
async fn many_runtimes(app: &common::TestApp, token: &str, ws: &str, n: usize) -> Vec<String> {
    let providers: Vec<String> = (0..n).map(|i| format!("cli-{i}")).collect();
    let mut ids = Vec::new();
    for (d, chunk) in providers.chunks(100).enumerate() {
        let types: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let r = app.register(token, ws, &format!("host-{d}"), &types).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        for runtime in r.body["runtimes"].as_array().unwrap() {
            ids.push(runtime["id"].as_str().unwrap().to_string());
        }
    }
    ids
}

#[actix_web::test]
async fn pings_and_updates_kept_in_all_are_bounded() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    // 205 runtimes × 20 open pings would be 4,100: past the 4,096 kept in all
    let runtimes = many_runtimes(&app, &alice.token, &ws, 205).await;
    let ping = |runtime: &str| {
        let path = format!("/api/runtimes/{runtime}/ping");
        let (app, token) = (&app, alice.token.clone());
        async move { app.post(&path, &token, json!({})).await }
    };
    let mut open = 0;
    for runtime in &runtimes {
        for _ in 0..20 {
            if open == 4096 {
                break;
            }
            let r = ping(runtime).await;
            assert_eq!(r.status, 200, "ping {open}: {:?}", r.body);
            open += 1;
        }
    }
    let last = &runtimes[204];
    let message = "too many pings and updates pending; try again shortly";
    let r = ping(last).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.error(), message);
    let r = app
        .post(
            &format!("/api/runtimes/{last}/update"),
            &alice.token,
            json!({"target_version": "2.0.0"}),
        )
        .await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.error(), message);

    // a finished ping makes room, on any runtime, and is forgotten
    let first = &runtimes[0];
    let hb = app
        .post(
            "/api/daemon/heartbeat",
            &alice.token,
            json!({"runtime_id": first}),
        )
        .await;
    let done = hb.body["pending_ping"]["id"].as_str().unwrap().to_string();
    let r = app
        .post(
            &format!("/api/daemon/runtimes/{first}/ping/{done}/result"),
            &alice.token,
            json!({"status": "completed", "output": "pong"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(ping(last).await.status, 200);
    let r = app
        .get(&format!("/api/runtimes/{first}/ping/{done}"), &alice.token)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(ping(last).await.status, 429);
}

#[actix_web::test]
async fn two_heartbeats_at_once_never_take_the_same_ping() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let mut queued = std::collections::HashSet::new();
    for _ in 0..5 {
        let r = app
            .post(&format!("/api/runtimes/{rt}/ping"), &alice.token, json!({}))
            .await;
        queued.insert(r.body["id"].as_str().unwrap().to_string());
    }
    let beats = futures_util::future::join_all((0..8).map(|_| {
        app.post(
            "/api/daemon/heartbeat",
            &alice.token,
            json!({"runtime_id": rt}),
        )
    }))
    .await;
    let mut taken = std::collections::HashSet::new();
    for hb in beats {
        assert_eq!(hb.status, 200, "{:?}", hb.body);
        if let Some(id) = hb.body["pending_ping"]["id"].as_str() {
            assert!(taken.insert(id.to_string()), "ping {id} handed out twice");
        }
    }
    assert_eq!(taken, queued, "each ping is handed out once");
}
