//! Several agenthub nodes on one PostgreSQL database: the sweeper runs on
//! one node at a time, and another takes it over when that node dies;
//! events, pings, wake-ups and claims reach across nodes; a node killed
//! under load loses no write it acknowledged.
//! PostgreSQL only: a SQLite file has one server process.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use common::{on_postgres, writes, ServerProcess, TestDb};
use rand::Rng;
use serde_json::json;

/// A directory whose config sweeps every second, and a database of its
/// own on the suite's PostgreSQL server; `None` on SQLite, whose file has
/// one server (there is no other node).
fn sweeping_every_second() -> Option<(tempfile::TempDir, TestDb)> {
    if !on_postgres() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[sweeper]\ninterval_secs = 1\n",
    )
    .unwrap();
    let db = TestDb::fresh(dir.path());
    Some((dir, db))
}

/// `N` in-process nodes on one fresh PostgreSQL database; `None` on
/// SQLite, whose file has one server (there is no other node).
async fn nodes<const N: usize>() -> Option<[common::TestApp; N]> {
    if !on_postgres() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let TestDb::Postgres(url) = TestDb::fresh(dir.path()) else {
        unreachable!("on PostgreSQL")
    };
    let mut nodes = Vec::new();
    for _ in 0..N {
        let url = url.clone();
        nodes.push(common::spawn_app_with(move |c| c.database.url = Some(url)).await);
    }
    nodes.try_into().ok()
}

/// How many sweeps the node at `base` has run (its `/metrics`).
async fn sweeps(client: &awc::Client, base: &str) -> Option<u64> {
    let mut res = client.get(format!("{base}/metrics")).send().await.ok()?;
    let body = res.body().await.ok()?;
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|line| line.strip_prefix("agenthub_sweep_duration_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
}

/// Whether the node at `base` runs a sweep within `secs` seconds.
async fn swept_within(client: &awc::Client, base: &str, secs: u64) -> bool {
    for _ in 0..secs * 10 {
        if sweeps(client, base).await.unwrap_or(0) > 0 {
            return true;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[actix_web::test]
async fn one_node_sweeps_and_another_takes_over_when_it_dies() {
    let Some((dir, db)) = sweeping_every_second() else {
        return;
    };
    let mut a = ServerProcess::start(dir.path(), &db);
    let client = awc::Client::default();
    // a takes the lease before b starts
    assert!(
        swept_within(&client, &a.base, 10).await,
        "the first node never swept"
    );
    let b = ServerProcess::start(dir.path(), &db);
    actix_web::rt::time::sleep(Duration::from_secs(4)).await;
    let (a_before, b_before) = (
        sweeps(&client, &a.base).await.unwrap(),
        sweeps(&client, &b.base).await.unwrap(),
    );
    assert!(a_before >= 4, "the leader sweeps every second: {a_before}");
    assert_eq!(
        b_before, 0,
        "the second node swept while the first held the lease"
    );

    a.child.kill().unwrap(); // SIGKILL: its session ends with it
    a.child.wait().unwrap();
    assert!(
        swept_within(&client, &b.base, 10).await,
        "no node took the sweeper over within 10 s"
    );
}

#[actix_web::test]
async fn an_event_published_on_one_node_reaches_a_stream_on_another() {
    let Some([a, c]) = nodes::<2>().await else {
        return;
    };
    let (alice, ws) = a.init_user("alice@example.com");
    let (bob, bobs_ws) = a.init_user("bob@example.com");

    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let follow = |token: String, ws: String| {
        let (client, base) = (client.clone(), c.base.clone());
        async move {
            let res = client
                .get(format!("{base}/api/events?workspace_id={ws}"))
                .insert_header(("Authorization", format!("Bearer {token}")))
                .send()
                .await
                .expect("stream request");
            assert_eq!(res.status().as_u16(), 200);
            res
        }
    };
    let mut alices = follow(alice.token.clone(), ws.clone()).await;
    let mut bobs = follow(bob.token.clone(), bobs_ws.clone()).await;

    // registered through node a, seen on node c's stream of that workspace
    let r = a
        .post(
            "/api/daemon/register",
            &alice.token,
            common::registration(&ws, "mbp", &["claude"]),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.body["runtimes"][0]["id"].as_str().unwrap().to_string();
    let text = common::read_until(&mut alices, &id).await;
    assert!(text.contains("event: daemon:register"), "{text}");

    // and only there: bob's workspace stream on c hears bob's own event,
    // not alice's
    let r = a
        .post(
            "/api/daemon/register",
            &bob.token,
            common::registration(&bobs_ws, "bobs-mbp", &["codex"]),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let text = common::read_until(&mut bobs, "bobs-mbp").await;
    assert!(
        !text.contains(&id),
        "another workspace's event leaked: {text}"
    );
}

#[actix_web::test]
async fn claims_spread_over_three_nodes_never_share_a_task_or_overrun_a_limit() {
    let Some(nodes) = nodes::<3>().await else {
        return;
    };
    let a = &nodes[0];
    let (alice, ws) = a.init_user("alice@example.com");
    let rt = a.runtime(&alice.token, &ws, "mbp", "claude").await;
    let mut limits = std::collections::HashMap::new();
    for i in 0..6 {
        let limit = 1 + i % 3; // 1, 2, 3, 1, 2, 3 → 12 slots
        let agent = a
            .agent(
                &alice.token,
                &ws,
                &rt,
                serde_json::json!({"max_concurrent_tasks": limit}),
            )
            .await;
        for t in 0..5 {
            a.task(&alice.token, &agent, &format!("{i}-{t}"), t).await;
        }
        limits.insert(agent, limit);
    }
    let replies =
        futures_util::future::join_all((0..30).map(|i| nodes[i % 3].claim(&alice.token, &rt)))
            .await;
    let mut seen = std::collections::HashSet::new();
    let mut per_agent: std::collections::HashMap<String, i64> = Default::default();
    for r in replies {
        assert_eq!(r.status, 200, "{:?}", r.body);
        let task = &r.body["task"];
        if task.is_null() {
            continue;
        }
        let id = task["id"].as_str().unwrap().to_string();
        assert!(seen.insert(id.clone()), "task {id} handed out twice");
        *per_agent
            .entry(task["agent_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 12, "every free slot is used");
    for (agent, n) in per_agent {
        assert!(n <= limits[&agent], "agent {agent} got {n} over its limit");
    }
    assert_eq!(
        a.count("SELECT count(*) FROM agent_task_queue WHERE status = 'dispatched'"),
        12
    );
}

#[actix_web::test]
async fn a_runtime_registered_on_one_node_is_pinged_from_another_and_answered_on_a_third() {
    let Some([a, b, c]) = nodes::<3>().await else {
        return;
    };
    let (alice, ws) = a.init_user("alice@example.com");
    let daemon = a.daemon_token(&alice.token, &ws, "mbp").await;
    let rt = a.runtime(&daemon, &ws, "mbp", "claude").await;

    let r = b
        .post(&format!("/api/runtimes/{rt}/ping"), &alice.token, json!({}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let ping = r.body["id"].as_str().unwrap().to_string();
    let r = b
        .post(
            &format!("/api/runtimes/{rt}/update"),
            &alice.token,
            json!({"target_version": "1.4.0"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let update = r.body["id"].as_str().unwrap().to_string();
    // one open update per runtime, whichever node is asked
    let r = a
        .post(
            &format!("/api/runtimes/{rt}/update"),
            &alice.token,
            json!({"target_version": "1.5.0"}),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);

    let hb = c
        .post("/api/daemon/heartbeat", &daemon, json!({"runtime_id": rt}))
        .await;
    assert_eq!(hb.status, 200, "{:?}", hb.body);
    assert_eq!(hb.body["pending_ping"], json!({"id": ping}));
    assert_eq!(
        hb.body["pending_update"],
        json!({"id": update, "target_version": "1.4.0"})
    );
    // handed over once: another node's heartbeat gets nothing more
    let hb = a
        .post("/api/daemon/heartbeat", &daemon, json!({"runtime_id": rt}))
        .await;
    assert!(hb.body.get("pending_ping").is_none(), "{:?}", hb.body);

    let r = c
        .post(
            &format!("/api/daemon/runtimes/{rt}/ping/{ping}/result"),
            &daemon,
            json!({"status": "completed", "output": "pong", "duration_ms": 12}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for node in [&a, &b, &c] {
        let r = node
            .get(&format!("/api/runtimes/{rt}/ping/{ping}"), &alice.token)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["status"], "completed");
        assert_eq!(r.body["output"], "pong");
        assert_eq!(r.body["duration_ms"], 12);
        let r = node
            .get(&format!("/api/runtimes/{rt}/update/{update}"), &alice.token)
            .await;
        assert_eq!(r.body["status"], "running");
    }
    // a second result, on another node, is refused
    let r = b
        .post(
            &format!("/api/daemon/runtimes/{rt}/ping/{ping}/result"),
            &daemon,
            json!({"status": "failed"}),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.error(), "ping already finished with status completed");
}

#[actix_web::test]
async fn a_task_queued_on_one_node_wakes_a_daemon_socket_on_another() {
    let Some([a, b]) = nodes::<2>().await else {
        return;
    };
    let (alice, ws) = a.init_user("alice@example.com");
    let daemon = a.daemon_token(&alice.token, &ws, "mbp").await;
    let rt = a.runtime(&daemon, &ws, "mbp", "claude").await;
    let agent = a.agent(&alice.token, &ws, &rt, json!({})).await;
    let mut socket = common::ws::open(&b, Some(&daemon), &[&rt]).await.unwrap();

    let queued = std::time::Instant::now();
    let task = a.task(&alice.token, &agent, "fix it", 0).await;
    let wakeup = socket.next("daemon:task_available").await;
    assert!(
        queued.elapsed() < Duration::from_secs(5),
        "woken after {:?}",
        queued.elapsed()
    );
    assert_eq!(wakeup, json!({"runtime_id": rt, "task_id": task}));
    // the daemon claims on the node it is connected to
    let response = socket
        .claim(
            "r-1",
            json!({"daemon_id": "mbp", "runtime_ids": [rt], "max_tasks": 1}),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.error);
    assert_eq!(response.body.unwrap()["tasks"][0]["id"], task);
}

#[actix_web::test]
async fn sigkill_of_one_node_of_three_loses_no_acknowledged_write_and_the_sweeper_moves() {
    let Some((dir, db)) = sweeping_every_second() else {
        return;
    };
    let init = common::cli_init(dir.path(), &db);
    let (token, ws) = (
        init["token"].as_str().unwrap().to_string(),
        init["workspace_id"].as_str().unwrap().to_string(),
    );
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
    let mut nodes: Vec<ServerProcess> = (0..3)
        .map(|_| ServerProcess::start(dir.path(), &db))
        .collect();
    let mut leader = None;
    for _ in 0..100 {
        for (i, node) in nodes.iter().enumerate() {
            if sweeps(&client, &node.base).await.unwrap_or(0) > 0 {
                leader = Some(i);
            }
        }
        if leader.is_some() {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let leader = leader.expect("a node sweeps within 10 s");

    let (runtime, agent) = writes::prepare(&client, &nodes[0].base, &token, &ws).await;
    writes::queue(&client, &nodes[1].base, &token, &agent, 60, "before").await;
    let acked: writes::Acked = Rc::default();
    let stop = Rc::new(Cell::new(false));
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let target = writes::Target {
                client: client.clone(),
                base: nodes[w % 3].base.clone(),
                token: token.clone(),
                workspace: ws.clone(),
                runtime: runtime.clone(),
            };
            writes::spawn(target, format!("w{w}"), acked.clone(), stop.clone())
        })
        .collect();
    let delay = rand::rng().random_range(200..600);
    actix_web::rt::time::sleep(Duration::from_millis(delay)).await;
    let dead = &mut nodes[leader];
    dead.child.kill().unwrap(); // SIGKILL, mid-request for its writers
    dead.child.wait().unwrap();
    let killed = acked.borrow().len();
    // the other nodes go on serving meanwhile
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    stop.set(true);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.borrow().clone();
    assert!(
        acked.len() > killed,
        "the survivors acknowledged writes after the kill"
    );
    for kind in ["runtime", "usage", "workspace", "claim"] {
        assert!(
            acked.iter().any(|(k, _)| *k == kind),
            "{kind} writes were acknowledged"
        );
    }
    writes::assert_kept(&db, &acked, &runtime, "after a node died");

    let survivors: Vec<&ServerProcess> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, node)| node)
        .collect();
    let mut took_over = false;
    for _ in 0..100 {
        for node in &survivors {
            took_over |= sweeps(&client, &node.base).await.unwrap_or(0) > 0;
        }
        if took_over {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(took_over, "no survivor took the sweeper over within 10 s");
}
