//! Nothing acknowledged is lost: the server is killed with SIGKILL while
//! registrations, usage reports, claims racing for one queue and other
//! writes are in flight, several times; after each restart every write it
//! answered 200/201 to is there, no task was handed out twice, and (on
//! SQLite) the file passes `PRAGMA integrity_check`. On PostgreSQL the
//! killed process is only a client: the same acknowledged writes must be
//! there, and the server's own recovery is PostgreSQL's.

mod common;

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use common::{binary, count_in, sqlite, ServerProcess, TestDb};
use rand::Rng;
use serde_json::{json, Value};

const ROUNDS: usize = 5;
const WRITERS: usize = 8;
/// Tasks queued before each round, for the claims to race for.
const QUEUED_PER_ROUND: usize = 40;

fn init(dir: &std::path::Path, db: &TestDb) -> Value {
    let mut init = binary();
    init.current_dir(dir)
        .args(["init", "--email", "ops@example.com", "--json"]);
    db.point(&mut init);
    let out = init.output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[actix_web::test]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::fresh(dir.path());
    let init = init(dir.path(), &db);
    let token = init["token"].as_str().unwrap().to_string();
    let ws = init["workspace_id"].as_str().unwrap().to_string();
    // (kind, key) of every write the server acknowledged
    let acked: Rc<RefCell<Vec<(&'static str, String)>>> = Rc::default();
    let mut runtime = String::new();
    let mut agent = String::new();

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
            let mut res = client
                .post(format!("{}/api/agents", server.base))
                .insert_header(("Authorization", format!("Bearer {token}")))
                .insert_header(("X-Workspace-ID", ws.as_str()))
                .send_json(
                    &json!({"name": "racer", "runtime_id": runtime, "max_concurrent_tasks": 100}),
                )
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
            let body: Value = res.json().await.unwrap();
            agent = body["id"].as_str().unwrap().to_string();
        }
        for n in 0..QUEUED_PER_ROUND {
            let res = client
                .post(format!("{}/api/agents/{agent}/tasks", server.base))
                .insert_header(("Authorization", format!("Bearer {token}")))
                .send_json(&json!({"prompt": format!("round {round} task {n}")}))
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
        }
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let client = client.clone();
                let base = server.base.clone();
                let token = token.clone();
                let ws = ws.clone();
                let acked = acked.clone();
                let usage_path = format!("/api/daemon/runtimes/{runtime}/usage");
                let claim_path = format!("/api/daemon/runtimes/{runtime}/tasks/claim");
                actix_web::rt::spawn(async move {
                    for i in 0.. {
                        let key = format!("r{round}-w{w}-{i}");
                        let (kind, path, body) = match i % 4 {
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
                            2 => ("workspace", "/api/workspaces", json!({"name": key, "slug": key})),
                            _ => ("claim", claim_path.as_str(), json!({})),
                        };
                        let sent = client
                            .post(format!("{base}{path}"))
                            .insert_header(("Authorization", format!("Bearer {token}")))
                            .send_json(&body)
                            .await;
                        match sent {
                            Ok(mut res) if res.status().is_success() && kind == "claim" => {
                                let Ok(reply) = res.json::<Value>().await else {
                                    return;
                                };
                                // an empty queue hands out nothing
                                if let Some(task) = reply["task"]["id"].as_str() {
                                    acked.borrow_mut().push((kind, task.to_string()));
                                }
                            }
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

        if let TestDb::Sqlite(path) = &db {
            assert_eq!(sqlite::integrity_check(path), "ok", "round {round}");
        }
        let claims: Vec<String> = acked
            .borrow()
            .iter()
            .filter(|(kind, _)| *kind == "claim")
            .map(|(_, task)| task.clone())
            .collect();
        let distinct: HashSet<&String> = claims.iter().collect();
        assert_eq!(distinct.len(), claims.len(), "a task was handed out twice");
        for (kind, key) in acked.borrow().iter() {
            let (table, column) = match *kind {
                "runtime" => ("agent_runtime", "daemon_id"),
                "usage" => ("runtime_usage", "model"),
                "claim" => {
                    // still handed out to this runtime: never back in the queue
                    let found = count_in(
                        &db,
                        &format!(
                            "SELECT count(*) FROM agent_task_queue WHERE id = '{key}'
                             AND status <> 'queued' AND runtime_id = '{runtime}'"
                        ),
                    );
                    assert_eq!(
                        found, 1,
                        "acknowledged claim of {key} lost in round {round}"
                    );
                    continue;
                }
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
    for kind in ["runtime", "usage", "workspace", "claim"] {
        assert!(
            acked.iter().filter(|(k, _)| *k == kind).count() > ROUNDS,
            "{kind} writes were acknowledged"
        );
    }
}
