//! The daemon protocol: register, deregister, heartbeat (SPEC §5).

mod common;

use agenthub::domain::Role;
use agenthub::store::seed;
use common::faults::{self, Fault};
use common::{parse_id, registration, spawn_app};
use serde_json::json;

#[actix_web::test]
async fn register_creates_runtimes_with_the_protocol_defaults() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let body = json!({
        "workspace_id": format!("  {ws} "),
        "daemon_id": "  ada-mbp  ",
        "device_name": " mbp ",
        "cli_version": "0.9.1",
        "runtimes": [
            {"type": "claude", "version": "1.2.3"},
            {"name": "My Codex", "type": "codex", "version": "", "status": "offline"},
            {}
        ]
    });
    let r = app.post("/api/daemon/register", &alice.token, body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["repos"], json!([]));
    let rts = r.body["runtimes"].as_array().unwrap();
    assert_eq!(rts.len(), 3);

    let claude = &rts[0];
    let mut keys: Vec<&str> = claude
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "created_at",
            "custom_name",
            "daemon_id",
            "device_info",
            "id",
            "last_seen_at",
            "machine_max_concurrent_tasks",
            "max_concurrent_tasks",
            "metadata",
            "name",
            "offline_reason",
            "offline_since",
            "owner_id",
            "provider",
            "runtime_mode",
            "status",
            "updated_at",
            "visibility",
            "workspace_id"
        ]
    );
    // a machine's runtimes are its owner's to bind agents to
    assert_eq!(claude["visibility"], "private");
    assert_eq!(claude["workspace_id"], ws.as_str());
    assert_eq!(claude["daemon_id"], "ada-mbp");
    assert_eq!(claude["name"], "claude (mbp)");
    assert_eq!(claude["provider"], "claude");
    assert_eq!(claude["runtime_mode"], "local");
    assert_eq!(claude["status"], "online");
    assert_eq!(claude["device_info"], "mbp · 1.2.3");
    assert_eq!(
        claude["metadata"],
        json!({"version": "1.2.3", "cli_version": "0.9.1"})
    );
    assert_eq!(claude["owner_id"], alice.id.as_str());
    let seen = claude["last_seen_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(seen).is_ok() && seen.ends_with('Z'));

    assert_eq!(rts[1]["name"], "My Codex");
    assert_eq!(rts[1]["status"], "offline");
    assert_eq!(rts[1]["device_info"], "mbp");
    assert_eq!(rts[2]["provider"], "unknown");
    assert_eq!(rts[2]["name"], "unknown (mbp)");
    assert_eq!(app.count("SELECT count(*) FROM agent_runtime"), 3);
}

#[actix_web::test]
async fn register_refuses_incomplete_requests_and_writes_nothing() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let cases = [
        (
            json!({"daemon_id": "d", "runtimes": [{"type": "claude"}]}),
            "workspace_id is required",
        ),
        (
            json!({"workspace_id": " ", "daemon_id": "d", "runtimes": [{}]}),
            "workspace_id is required",
        ),
        (
            json!({"workspace_id": ws, "daemon_id": "  ", "runtimes": [{}]}),
            "daemon_id is required",
        ),
        (
            json!({"workspace_id": ws, "daemon_id": "d", "runtimes": []}),
            "at least one runtime is required",
        ),
        (
            json!({"workspace_id": ws, "daemon_id": "d"}),
            "at least one runtime is required",
        ),
    ];
    for (body, message) in cases {
        let r = app.post("/api/daemon/register", &alice.token, body).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.error(), message);
    }
    let r = app
        .post(
            "/api/daemon/register",
            &alice.token,
            registration("12345", "d", &["claude"]),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.error().starts_with("invalid workspace_id"),
        "{}",
        r.error()
    );
    assert_eq!(app.count("SELECT count(*) FROM agent_runtime"), 0);
}

#[actix_web::test]
async fn re_register_keeps_the_runtime_id() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let first = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    app.deregister(&alice.token, &[&first]).await;
    let mut body = registration(&ws, "mbp", &["claude"]);
    body["runtimes"][0]["version"] = json!("2.0.0");
    let r = app.post("/api/daemon/register", &alice.token, body).await;
    assert_eq!(r.body["runtimes"][0]["id"], first.as_str());
    assert_eq!(r.body["runtimes"][0]["status"], "online");
    assert_eq!(r.body["runtimes"][0]["device_info"], "mbp · 2.0.0");
    assert_eq!(app.count("SELECT count(*) FROM agent_runtime"), 1);
}

#[actix_web::test]
async fn daemon_token_registration_keeps_the_owner() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let id = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let alices_daemon = app.daemon_token(&alice.token, &ws, "mbp").await;
    let r = app
        .register(&alices_daemon, &ws, "mbp", &["claude", "codex"])
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["runtimes"][0]["id"], id.as_str());
    assert_eq!(r.body["runtimes"][0]["owner_id"], alice.id.as_str());
    // a runtime first registered with a daemon token belongs to its minter
    assert_eq!(r.body["runtimes"][1]["owner_id"], alice.id.as_str());
}

#[actix_web::test]
async fn no_member_can_take_over_another_members_runtime() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    // minted before alice's machine registered (afterwards it is refused)
    let bobs_daemon = app.daemon_token(&bob.token, &ws, "alice-mbp").await;
    let id = app.runtime(&alice.token, &ws, "alice-mbp", "claude").await;
    // alice-mbp / claude are visible to every member in the runtime list
    let before = app.dump();
    for token in [&bob.token, &bobs_daemon] {
        let r = app.register(token, &ws, "alice-mbp", &["claude"]).await;
        assert_eq!(r.status, 409, "{:?}", r.body);
        assert_eq!(
            r.error(),
            "daemon_id \"alice-mbp\" is registered to another member"
        );
        // nor by adding runtimes of their own that pose as part of her
        // machine, which would lock her daemon out
        let r = app
            .register(token, &ws, "alice-mbp", &["codex", "claude"])
            .await;
        assert_eq!(r.status, 409, "{:?}", r.body);
        let r = app.register(token, &ws, "alice-mbp", &["codex"]).await;
        assert_eq!(r.status, 409, "{:?}", r.body);
    }
    assert_eq!(before, app.dump(), "a refused registration wrote nothing");
    // so bob cannot act for alice's machine
    let r = app
        .post(
            "/api/daemon/heartbeat",
            &bobs_daemon,
            json!({"runtime_id": id}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .post(
            &format!("/api/runtimes/{id}/update"),
            &bob.token,
            json!({"target_version": "6.6.6"}),
        )
        .await;
    assert_eq!(r.status, 403);
    // and alice's real daemon keeps her runtime
    let r = app
        .register(&alice.token, &ws, "alice-mbp", &["claude"])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["runtimes"][0]["id"], id.as_str());
    assert_eq!(r.body["runtimes"][0]["owner_id"], alice.id.as_str());
}

#[actix_web::test]
async fn a_daemon_token_acts_only_for_its_daemon_id() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let token = app.daemon_token(&alice.token, &ws, "mbp").await;
    let r = app.register(&token, &ws, "laptop", &["claude"]).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(
        r.error(),
        "this daemon token was minted for daemon_id \"mbp\""
    );
    assert_eq!(app.count("SELECT count(*) FROM agent_runtime"), 0);
    // the runtimes of alice's other machine are out of its reach, too
    let laptop = app.runtime(&alice.token, &ws, "laptop", "claude").await;
    let r = app
        .post(
            "/api/daemon/heartbeat",
            &token,
            json!({"runtime_id": laptop}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "runtime not found");
}

#[actix_web::test]
async fn registrations_are_capped() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let types: Vec<String> = (0..101).map(|i| format!("cli-{i}")).collect();
    let types: Vec<&str> = types.iter().map(String::as_str).collect();
    let r = app.register(&alice.token, &ws, "mbp", &types).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "a registration carries at most 100 runtimes");
    assert_eq!(app.count("SELECT count(*) FROM agent_runtime"), 0);
    let r = app.register(&alice.token, &ws, "mbp", &types[..100]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[actix_web::test]
async fn a_full_workspace_refuses_new_runtimes_but_not_re_registration() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    // fill the workspace up to its limit through the store: 50,000
    // registrations through HTTP would only make the test slow
    let (workspace, owner) = (parse_id(&ws), parse_id(&alice.id));
    app.arrange(move |conn| {
        let at = "2026-01-01T00:00:00.000Z".parse().unwrap();
        seed::offline_runtimes(conn, workspace, owner, 49_999, at)
    });
    let r = app
        .register(&alice.token, &ws, "new-host", &["claude"])
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.error(),
        "this workspace already has the most runtimes allowed (50000); delete unused ones first"
    );
    let r = app.register(&alice.token, &ws, "mbp", &["claude"]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["runtimes"][0]["id"], rt.as_str());
}

#[actix_web::test]
async fn registration_is_all_or_nothing() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    // make the database refuse one runtime of the batch
    faults::fault(
        &app,
        Fault::RefuseInsert {
            table: "agent_runtime",
            when: "NEW.provider = 'boom'",
        },
    );
    let r = app
        .register(&alice.token, &ws, "mbp", &["claude", "boom"])
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.error(), "internal server error");
    assert_eq!(app.count("SELECT count(*) FROM agent_runtime"), 0);
}

#[actix_web::test]
async fn fifty_concurrent_registrations_make_one_runtime() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let replies = futures_util::future::join_all(
        (0..50).map(|_| app.register(&alice.token, &ws, "mbp", &["claude"])),
    )
    .await;
    let ids: std::collections::HashSet<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{:?}", r.body);
            r.body["runtimes"][0]["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(app.count("SELECT count(*) FROM agent_runtime"), 1);
}

#[actix_web::test]
async fn agents_move_from_this_machines_old_offline_runtimes_only() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let (carol, other_ws) = app.init_user("carol@example.com");
    app.join(&carol.token, &other_ws, &alice, "member").await;

    // (daemon_id, provider, owner token, workspace, offline?) → moves?
    let cases = [
        ("mbp-staging", "claude", &alice.token, &ws, true, true),
        ("mbp-", "claude", &alice.token, &ws, true, true),
        ("mbp-online", "claude", &alice.token, &ws, false, false),
        ("mbp2", "claude", &alice.token, &ws, true, false),
        ("other-mbp-x", "claude", &alice.token, &ws, true, false),
        ("mbp-codex", "codex", &alice.token, &ws, true, false),
        ("mbp-bob", "claude", &bob.token, &ws, true, false),
        (
            "mbp-elsewhere",
            "claude",
            &alice.token,
            &other_ws,
            true,
            false,
        ),
    ];
    let mut agents = Vec::new();
    for (daemon, provider, token, workspace, offline, moves) in cases {
        let rt = app.runtime(token, workspace, daemon, provider).await;
        if offline {
            app.deregister(token, &[&rt]).await;
        }
        let owner = if *token == bob.token {
            &bob.id
        } else {
            &alice.id
        };
        agents.push((
            app.insert_agent(workspace, &rt, owner, false),
            rt,
            moves,
            daemon,
        ));
    }
    let target = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    for (agent, old, moves, daemon) in agents {
        let now = app.agent_runtime(&agent);
        if moves {
            assert_eq!(now, target, "{daemon} should have moved");
        } else {
            assert_eq!(now, old, "{daemon} should have stayed");
        }
    }
}

#[actix_web::test]
async fn wildcards_in_daemon_ids_are_literal() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let mut agents = Vec::new();
    for daemon in ["axb-1", "abc-2", "a_b-3", "a%-4"] {
        let rt = app.runtime(&alice.token, &ws, daemon, "claude").await;
        app.deregister(&alice.token, &[&rt]).await;
        agents.push((daemon, app.insert_agent(&ws, &rt, &alice.id, false)));
    }
    let under = app.runtime(&alice.token, &ws, "a_b", "claude").await;
    let percent = app.runtime(&alice.token, &ws, "a%", "claude").await;
    for (daemon, agent) in agents {
        let expected = match daemon {
            "a_b-3" => Some(&under),
            "a%-4" => Some(&percent),
            _ => None,
        };
        let now = app.agent_runtime(&agent);
        match expected {
            Some(target) => assert_eq!(&now, target, "{daemon}"),
            None => assert!(now != under && now != percent, "{daemon} moved"),
        }
    }
}

#[actix_web::test]
async fn heartbeat_marks_online_and_answers_404_when_gone() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    app.deregister(&alice.token, &[&rt]).await;
    let id = parse_id(&rt);
    let at = "2026-01-01T00:00:00.000Z".parse().unwrap();
    app.arrange(move |conn| seed::backdate_runtime(conn, id, at));
    let r = app
        .post(
            "/api/daemon/heartbeat",
            &alice.token,
            json!({"runtime_id": rt}),
        )
        .await;
    assert_eq!(r.status, 200);
    // what the April daemon reads: the status, and nothing pending
    assert_eq!(r.body["status"], "ok");
    assert!(r.body.get("pending_ping").is_none() && r.body.get("pending_update").is_none());
    assert_eq!(app.runtime_status(&rt), "online");
    let seen = app.runtime_row(&rt).last_seen_at.unwrap();
    assert!(seen.to_string().as_str() > "2026-01-01T00:00:01");

    let r = app
        .delete(&format!("/api/runtimes/{rt}"), &alice.token)
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .post(
            "/api/daemon/heartbeat",
            &alice.token,
            json!({"runtime_id": rt}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "runtime not found");

    let r = app
        .post("/api/daemon/heartbeat", &alice.token, json!({}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "runtime_id is required");
    let r = app
        .post(
            "/api/daemon/heartbeat",
            &alice.token,
            json!({"runtime_id": "abc"}),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[actix_web::test]
async fn deregister_marks_reachable_runtimes_offline_and_skips_the_rest() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let (mallory, mws) = app.init_user("mallory@example.com");
    let mine = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let theirs = app.runtime(&mallory.token, &mws, "evil", "claude").await;
    let token = app.daemon_token(&alice.token, &ws, "mbp").await;
    let since = |id: String| {
        let (app, token, ws) = (&app, alice.token.clone(), ws.clone());
        async move { app.listed_runtime(&token, &ws, &id).await["offline_since"].clone() }
    };
    assert_eq!(
        since(mine.clone()).await,
        json!(null),
        "online: not offline since"
    );
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let r = app
        .post(
            "/api/daemon/deregister",
            &token,
            json!({"runtime_ids": [mine, theirs, "00000000-0000-4000-8000-000000000000"]}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"status": "ok"}));
    assert_eq!(app.runtime_status(&mine), "offline");
    assert_eq!(app.runtime_status(&theirs), "online");
    // offline since the deregistration, until a heartbeat brings it back
    let at: chrono::DateTime<chrono::Utc> = since(mine.clone())
        .await
        .as_str()
        .expect("offline_since set")
        .parse()
        .unwrap();
    assert!(at >= before && at <= chrono::Utc::now(), "{at}");
    let r = app
        .post("/api/daemon/heartbeat", &token, json!({"runtime_id": mine}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(since(mine.clone()).await, json!(null));
}

#[actix_web::test]
async fn daemon_token_reaches_only_its_own_workspace() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let (bob, bws) = app.init_user("bob@example.com");
    let bobs_runtime = app.runtime(&bob.token, &bws, "bob-mbp", "claude").await;
    let token = app.daemon_token(&alice.token, &ws, "mbp").await;

    let r = app.register(&token, &bws, "mbp", &["claude"]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "workspace not found");

    let r = app
        .post(
            "/api/daemon/heartbeat",
            &token,
            json!({"runtime_id": bobs_runtime}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "runtime not found");

    let ping = app
        .post(
            &format!("/api/runtimes/{bobs_runtime}/ping"),
            &bob.token,
            json!({}),
        )
        .await;
    let ping_id = ping.body["id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/api/daemon/runtimes/{bobs_runtime}/ping/{ping_id}/result"),
            &token,
            json!({"status": "completed"}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "runtime not found");
    let get = app
        .get(
            &format!("/api/runtimes/{bobs_runtime}/ping/{ping_id}"),
            &bob.token,
        )
        .await;
    assert_eq!(get.body["status"], "pending");

    // a PAT user reaches only workspaces they belong to, too
    let r = app.register(&alice.token, &bws, "mbp", &["claude"]).await;
    assert_eq!(r.status, 404);
    assert_eq!(app.count("SELECT count(*) FROM agent_runtime"), 1);
    assert_eq!(app.runtime_status(&bobs_runtime), "online");
}

#[actix_web::test]
async fn heartbeats_of_online_runtimes_are_written_in_groups() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    app.age_runtime(&rt, 600);
    let seen = || app.runtime_row(&rt).last_seen_at.unwrap();
    let old = seen();
    let r = app
        .post(
            "/api/daemon/heartbeat",
            &alice.token,
            json!({"runtime_id": rt}),
        )
        .await;
    assert_eq!(r.status, 200);
    // written by the next group commit, a fraction of a second later
    assert!(common::eventually(5, || seen() > old).await);
    assert!(seen().to_string() > chrono::Utc::now().format("%Y-%m-%dT%H:%M").to_string());
}

#[actix_web::test]
async fn a_buffered_heartbeat_counts_for_the_next_sweep() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    app.age_runtime(&rt, 600);
    app.post(
        "/api/daemon/heartbeat",
        &alice.token,
        json!({"runtime_id": rt}),
    )
    .await;
    let config = agenthub::config::SweeperConfig {
        stale_after_secs: 60,
        ..Default::default()
    };
    let report = agenthub::jobs::sweeper::sweep_once(&app.state, &config);
    assert_eq!(report.stale_runtimes, 0);
    assert_eq!(app.runtime_status(&rt), "online");
}

#[actix_web::test]
async fn registration_text_is_bounded() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let long = "x".repeat(256);
    let mut body = registration(&ws, "mbp", &["claude"]);
    body["device_name"] = json!(long);
    let r = app.post("/api/daemon/register", &alice.token, body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "device_name is too long (at most 255 bytes)");
    let r = app.register(&alice.token, &ws, &long, &["claude"]).await;
    assert_eq!(r.error(), "daemon_id is too long (at most 255 bytes)");
    let mut body = registration(&ws, "mbp", &["claude"]);
    body["runtimes"][0]["version"] = json!(long);
    let r = app.post("/api/daemon/register", &alice.token, body).await;
    assert_eq!(
        r.error(),
        "runtimes[0].version is too long (at most 255 bytes)"
    );
    assert_eq!(app.count("SELECT count(*) FROM agent_runtime"), 0);
    // 255 bytes is fine
    let r = app
        .register(&alice.token, &ws, &long[..255], &["claude"])
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[actix_web::test]
async fn a_removed_members_daemon_token_reaches_nothing() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let token = app.daemon_token(&bob.token, &ws, "bob-mbp").await;
    let rt = app.runtime(&token, &ws, "bob-mbp", "claude").await;
    app.remove_member(&alice.token, &ws, &bob.id).await;
    for t in [&token, &bob.token] {
        let r = app
            .post("/api/daemon/heartbeat", t, json!({"runtime_id": rt}))
            .await;
        assert!(matches!(r.status, 401 | 404), "{:?}", r.body);
    }
    assert_eq!(app.runtime_status(&rt), "offline");
}

#[actix_web::test]
async fn a_finished_task_is_out_of_reach_once_its_runtime_is_gone() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let old = app.runtime(&alice.token, &ws, "alice-mbp", "claude").await;
    let new = app.runtime(&bob.token, &ws, "bob-mbp", "claude").await;
    app.share_runtime(&bob.token, &new).await;
    let agent = app.agent(&alice.token, &ws, &old, json!({})).await;
    let task = app.task(&alice.token, &agent, "x", 0).await;
    assert_eq!(app.claim(&alice.token, &old).await.status, 200);
    for step in ["start", "complete"] {
        let r = app
            .post(
                &format!("/api/daemon/tasks/{task}/{step}"),
                &alice.token,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{step}");
    }
    // the agent moves to bob's machine and alice's old one is deleted
    let r = app
        .request(
            "PUT",
            &format!("/api/agents/{agent}"),
            Some(&alice.token),
            Some(&json!({"runtime_id": new}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        app.delete(&format!("/api/runtimes/{old}"), &alice.token)
            .await
            .status,
        200
    );
    let before = app.dump();
    let r = app
        .post(
            &format!("/api/daemon/tasks/{task}/usage"),
            &bob.token,
            json!({"usage": [{"provider": "claude", "model": "opus", "input_tokens": 5}]}),
        )
        .await;
    assert_eq!((r.status, r.error()), (404, "task not found"));
    assert_eq!(before, app.dump());
}
