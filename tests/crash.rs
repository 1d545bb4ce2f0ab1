//! Nothing acknowledged is lost: the server is killed with SIGKILL while
//! registrations, usage reports and other writes are in flight, several
//! times; after each restart every write it
//! answered 200/201 to is there and the file passes `PRAGMA
//! integrity_check`.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::{binary, count_in, sqlite, ServerProcess};
use rand::Rng;
use serde_json::{json, Value};

const ROUNDS: usize = 5;
const WRITERS: usize = 8;

fn init(dir: &std::path::Path, db: &std::path::Path) -> Value {
    let out = binary()
        .current_dir(dir)
        .args(["init", "--email", "ops@example.com", "--json", "--db"])
        .arg(db)
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[actix_web::test]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let init = init(dir.path(), &db);
    let token = init["token"].as_str().unwrap().to_string();
    let ws = init["workspace_id"].as_str().unwrap().to_string();
    // (kind, key) of every write the server acknowledged
    let acked: Rc<RefCell<Vec<(&'static str, String)>>> = Rc::default();
    let mut runtime = String::new();

    for round in 0..ROUNDS {
        let mut server = ServerProcess::start(dir.path(), &db);
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(5))
            .finish();
        if runtime.is_empty() {
            let mut res = client
                .post(format!("{}/api/daemon/register", server.base))
                .insert_header(("Authorization", format!("Bearer {token}")))
                .send_json(&json!({"workspace_id": ws, "daemon_id": "reporter", "runtimes": [{"type": "claude"}]}))
                .await
                .unwrap();
            let body: Value = res.json().await.unwrap();
            runtime = body["runtimes"][0]["id"].as_str().unwrap().to_string();
        }
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let client = client.clone();
                let base = server.base.clone();
                let token = token.clone();
                let ws = ws.clone();
                let acked = acked.clone();
                let usage_path = format!("/api/daemon/runtimes/{runtime}/usage");
                actix_web::rt::spawn(async move {
                    for i in 0.. {
                        let key = format!("r{round}-w{w}-{i}");
                        let (kind, path, body) = match i % 3 {
                            0 => (
                                "runtime",
                                "/api/daemon/register",
                                json!({"workspace_id": ws, "daemon_id": key,
                                       "runtimes": [{"type": "claude"}, {"type": "codex"}]}),
                            ),
                            1 => (
                                "usage",
                                usage_path.as_str(),
                                json!({"entries": [
                                    {"date": "2026-11-01", "provider": "claude", "model": key, "input_tokens": 1},
                                    {"date": "2026-11-02", "provider": "claude", "model": key, "input_tokens": 2}]}),
                            ),
                            _ => ("workspace", "/api/workspaces", json!({"name": key, "slug": key})),
                        };
                        let sent = client
                            .post(format!("{base}{path}"))
                            .insert_header(("Authorization", format!("Bearer {token}")))
                            .send_json(&body)
                            .await;
                        match sent {
                            Ok(res) if res.status().is_success() => {
                                acked.borrow_mut().push((kind, key));
                            }
                            // the server is gone: this writer is done
                            _ => return,
                        }
                    }
                })
            })
            .collect();
        let delay = rand::rng().random_range(150..700);
        actix_web::rt::time::sleep(Duration::from_millis(delay)).await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        for w in writers {
            w.await.unwrap();
        }

        assert_eq!(sqlite::integrity_check(&db), "ok", "round {round}");
        for (kind, key) in acked.borrow().iter() {
            let (table, column) = match *kind {
                "runtime" => ("agent_runtime", "daemon_id"),
                "usage" => ("runtime_usage", "model"),
                _ => ("workspace", "slug"),
            };
            let found = count_in(
                &db,
                &format!("SELECT count(*) FROM {table} WHERE {column} = '{key}'"),
            );
            let expected = if *kind == "workspace" { 1 } else { 2 };
            assert_eq!(
                found, expected,
                "acknowledged {kind} {key} lost in round {round}"
            );
        }
    }
    let acked = acked.borrow();
    for kind in ["runtime", "usage", "workspace"] {
        assert!(
            acked.iter().filter(|(k, _)| *k == kind).count() > ROUNDS,
            "{kind} writes were acknowledged"
        );
    }
}
