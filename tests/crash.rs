//! Nothing acknowledged is lost: the server is killed with SIGKILL while
//! registrations, usage reports, claims racing for one queue and other
//! writes are in flight, several times; after each restart every write it
//! answered 200/201 to is there, no task was handed out twice, and (on
//! SQLite) the file passes `PRAGMA integrity_check`. On PostgreSQL the
//! killed process is only a client: the same acknowledged writes must be
//! there, and the server's own recovery is PostgreSQL's.
//! Pings and updates queued before a SIGKILL are handed out after it.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use common::{cli_init, sqlite, writes, Server, ServerProcess, TestDb};
use rand::Rng;
use serde_json::json;

const ROUNDS: usize = 5;
const WRITERS: usize = 8;
/// Tasks queued before each round, for the claims to race for.
const QUEUED_PER_ROUND: usize = 40;

#[actix_web::test]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::fresh(dir.path());
    let init = cli_init(dir.path(), &db);
    let token = init["token"].as_str().unwrap().to_string();
    let ws = init["workspace_id"].as_str().unwrap().to_string();
    // (kind, key) of every write the server acknowledged
    let acked: writes::Acked = Rc::default();
    let mut runtime = String::new();
    let mut agent = String::new();

    for round in 0..ROUNDS {
        let mut server = ServerProcess::start(dir.path(), &db);
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(5))
            .finish();
        if runtime.is_empty() {
            (runtime, agent) = writes::prepare(&client, &server.base, &token, &ws).await;
        }
        let label = format!("round {round}");
        writes::queue(
            &client,
            &server.base,
            &token,
            &agent,
            QUEUED_PER_ROUND,
            &label,
        )
        .await;
        let target = writes::Target {
            client: client.clone(),
            base: server.base.clone(),
            token: token.clone(),
            workspace: ws.clone(),
            runtime: runtime.clone(),
        };
        let stop = Rc::new(Cell::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                writes::spawn(
                    target.clone(),
                    format!("r{round}-w{w}"),
                    acked.clone(),
                    stop.clone(),
                )
            })
            .collect();
        let delay = rand::rng().random_range(150..700);
        actix_web::rt::time::sleep(Duration::from_millis(delay)).await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        for w in writers {
            w.await.unwrap();
        }

        if let TestDb::Sqlite(path) = &db {
            assert_eq!(sqlite::integrity_check(path), "ok", "round {round}");
        }
        writes::assert_kept(&db, &acked.borrow(), &runtime, &format!("in round {round}"));
    }
    let acked = acked.borrow();
    for kind in ["runtime", "usage", "workspace", "claim"] {
        assert!(
            acked.iter().filter(|(k, _)| *k == kind).count() > ROUNDS,
            "{kind} writes were acknowledged"
        );
    }
}

#[actix_web::test]
async fn a_queued_ping_and_update_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::fresh(dir.path());
    let init = cli_init(dir.path(), &db);
    let token = init["token"].as_str().unwrap();
    let ws = init["workspace_id"].as_str().unwrap();
    let client = awc::Client::default();
    let mut first = ServerProcess::start(dir.path(), &db);
    let to = Server {
        client: &client,
        base: &first.base,
    };
    let r = to
        .post(
            "/api/daemon/register",
            token,
            json!({"workspace_id": ws, "daemon_id": "mbp", "runtimes": [{"type": "claude"}]}),
        )
        .await;
    let rt = r.body["runtimes"][0]["id"].as_str().unwrap().to_string();
    let ping = to
        .post(&format!("/api/runtimes/{rt}/ping"), token, json!({}))
        .await;
    let update = to
        .post(
            &format!("/api/runtimes/{rt}/update"),
            token,
            json!({"target_version": "1.4.0"}),
        )
        .await;
    assert_eq!((ping.status, update.status), (200, 200));
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();

    let second = ServerProcess::start(dir.path(), &db);
    let to = Server {
        client: &client,
        base: &second.base,
    };
    let hb = to
        .post("/api/daemon/heartbeat", token, json!({"runtime_id": rt}))
        .await;
    assert_eq!(hb.status, 200, "{:?}", hb.body);
    assert_eq!(hb.body["pending_ping"], json!({"id": ping.body["id"]}));
    assert_eq!(
        hb.body["pending_update"],
        json!({"id": update.body["id"], "target_version": "1.4.0"})
    );
    let path = format!(
        "/api/daemon/runtimes/{rt}/ping/{}",
        ping.body["id"].as_str().unwrap()
    );
    let r = to
        .post(
            &format!("{path}/result"),
            token,
            json!({"status": "completed"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "completed");
}
