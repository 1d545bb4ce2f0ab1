//! Writers that keep a server busy with acknowledged writes of several
//! kinds (registrations, usage reports, workspaces, claims racing for one
//! queue), and the check that every write a server answered 2xx to is in
//! the database: what the crash and multi-node tests kill servers under.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;

use serde_json::{json, Value};

use super::{count_in, TestDb};

/// `(kind, key)` of every write a server acknowledged: kind is `runtime`,
/// `usage`, `workspace` or `claim` (key: the claimed task's id).
pub type Acked = Rc<RefCell<Vec<(&'static str, String)>>>;

/// Where a writer sends its writes, and as whom.
#[derive(Clone)]
pub struct Target {
    pub client: awc::Client,
    pub base: String,
    pub token: String,
    pub workspace: String,
    /// The runtime whose queue claims race for and usage is reported on.
    pub runtime: String,
}

/// Registers the runtime that claims race on (daemon `reporter`) and an
/// agent bound to it with room for 100 tasks at once; returns (runtime,
/// agent).
pub async fn prepare(client: &awc::Client, base: &str, token: &str, ws: &str) -> (String, String) {
    let mut res = client
        .post(format!("{base}/api/daemon/register"))
        .bearer_auth(token)
        .send_json(
            &json!({"workspace_id": ws, "daemon_id": "reporter", "runtimes": [{"type": "claude"}]}),
        )
        .await
        .expect("register");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("registration");
    let runtime = body["runtimes"][0]["id"]
        .as_str()
        .expect("runtime id")
        .to_string();
    let mut res = client
        .post(format!("{base}/api/agents"))
        .bearer_auth(token)
        .insert_header(("X-Workspace-ID", ws))
        .send_json(&json!({"name": "racer", "runtime_id": runtime, "max_concurrent_tasks": 100}))
        .await
        .expect("create agent");
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.expect("agent");
    (runtime, body["id"].as_str().expect("agent id").to_string())
}

/// Queues `n` tasks for `agent`, prompts starting with `label`.
pub async fn queue(
    client: &awc::Client,
    base: &str,
    token: &str,
    agent: &str,
    n: usize,
    label: &str,
) {
    for i in 0..n {
        let res = client
            .post(format!("{base}/api/agents/{agent}/tasks"))
            .bearer_auth(token)
            .send_json(&json!({"prompt": format!("{label} task {i}")}))
            .await
            .expect("queue a task");
        assert_eq!(res.status(), 201);
    }
}

/// Sends writes to `target` one after another, keys starting with
/// `prefix`, recording each acknowledged one in `acked`; ends at the first
/// request that fails (the server is gone) or once `stop` is set.
pub fn spawn(
    target: Target,
    prefix: String,
    acked: Acked,
    stop: Rc<Cell<bool>>,
) -> actix_web::rt::task::JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let Target {
            client,
            base,
            token,
            workspace,
            runtime,
        } = target;
        let usage_path = format!("/api/daemon/runtimes/{runtime}/usage");
        let claim_path = format!("/api/daemon/runtimes/{runtime}/tasks/claim");
        for i in 0.. {
            if stop.get() {
                return;
            }
            let key = format!("{prefix}-{i}");
            let (kind, path, body) = match i % 4 {
                0 => (
                    "runtime",
                    "/api/daemon/register",
                    json!({"workspace_id": workspace, "daemon_id": key,
                           "runtimes": [{"type": "claude"}, {"type": "codex"}]}),
                ),
                1 => (
                    "usage",
                    usage_path.as_str(),
                    json!({"entries": [
                        {"date": "2026-11-01", "provider": "claude", "model": key, "input_tokens": 1},
                        {"date": "2026-11-02", "provider": "claude", "model": key, "input_tokens": 2}]}),
                ),
                2 => (
                    "workspace",
                    "/api/workspaces",
                    json!({"name": key, "slug": key}),
                ),
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
}

/// Asserts that every acknowledged write is in `db` and that no task was
/// handed out twice; `when` names the moment in failure messages.
pub fn assert_kept(db: &TestDb, acked: &[(&'static str, String)], runtime: &str, when: &str) {
    let claims: Vec<&String> = acked
        .iter()
        .filter(|(kind, _)| *kind == "claim")
        .map(|(_, task)| task)
        .collect();
    let distinct: HashSet<&&String> = claims.iter().collect();
    assert_eq!(distinct.len(), claims.len(), "a task was handed out twice");
    for (kind, key) in acked {
        let (table, column) = match *kind {
            "runtime" => ("agent_runtime", "daemon_id"),
            "usage" => ("runtime_usage", "model"),
            "claim" => {
                // still handed out to this runtime: never back in the queue
                let found = count_in(
                    db,
                    &format!(
                        "SELECT count(*) FROM agent_task_queue WHERE id = '{key}'
                         AND status <> 'queued' AND runtime_id = '{runtime}'"
                    ),
                );
                assert_eq!(found, 1, "acknowledged claim of {key} lost {when}");
                continue;
            }
            _ => ("workspace", "slug"),
        };
        let found = count_in(
            db,
            &format!("SELECT count(*) FROM {table} WHERE {column} = '{key}'"),
        );
        let expected = if *kind == "workspace" { 1 } else { 2 };
        assert_eq!(found, expected, "acknowledged {kind} {key} lost {when}");
    }
}
