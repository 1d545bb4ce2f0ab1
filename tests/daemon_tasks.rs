//! What the current Multica daemon (1cc46b2697) says about its tasks
//! besides their transitions, and what it asks about things agenthub does
//! not have. Replies are decoded into structs that mirror the daemon's Go
//! types (same JSON names; `Option` where Go has a pointer, `omitempty`,
//! or a `time.Time` that agenthub sends as null).

mod common;

use agenthub::domain::{Role, Timestamp};
use agenthub::jobs::sweeper::sweep_once;
use agenthub::store::seed::{self, TaskClock, TokenKind};
use agenthub::store::tasks;
use chrono::{DateTime, Duration, Utc};
use common::{parse_id, spawn_app, thresholds, Machine, TestApp};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// `RecoverOrphanedTasks`' reply (the daemon discards it), with the tasks
/// still the daemon's own.
#[derive(Debug, Deserialize)]
struct Recovered {
    orphaned: u64,
    retried: u64,
    active_tasks: Vec<Value>,
}

/// `TaskGCStatus`.
#[derive(Debug, Deserialize)]
struct TaskGcStatus {
    status: String,
    completed_at: Option<String>,
}

/// `IssueGCStatus`.
#[derive(Debug, Deserialize)]
struct IssueGcStatus {
    status: String,
    updated_at: String,
}

/// `IssueGCCheckResult` (status and updated_at are omitempty).
#[derive(Debug, Deserialize)]
struct IssueGcCheckResult {
    id: String,
    found: bool,
    status: Option<String>,
    updated_at: Option<String>,
}

/// `issueGCBatchResponse`.
#[derive(Debug, Deserialize)]
struct IssueGcBatch {
    issues: Vec<IssueGcCheckResult>,
}

/// `ChatSessionGCStatus`.
#[derive(Debug, Deserialize)]
struct ChatSessionGcStatus {
    status: String,
    updated_at: Option<String>,
}

/// `AutopilotRunGCStatus`.
#[derive(Debug, Deserialize)]
struct AutopilotRunGcStatus {
    status: String,
    completed_at: Option<String>,
}

/// `RepoData`.
#[derive(Debug, Deserialize)]
struct RepoData {
    url: String,
}

/// `WorkspaceReposResponse` (settings is omitempty).
#[derive(Debug, Deserialize)]
struct WorkspaceRepos {
    workspace_id: String,
    repos: Vec<RepoData>,
    repos_version: String,
    settings: Option<Value>,
}

/// `RuntimeProfile`, the fields the daemon needs.
#[derive(Debug, Deserialize)]
struct RuntimeProfile {
    id: String,
}

/// `RuntimeProfilesResponse`.
#[derive(Debug, Deserialize)]
struct RuntimeProfiles {
    workspace_id: String,
    runtime_profiles: Vec<RuntimeProfile>,
}

/// `RenewTokenResponse`.
#[derive(Debug, Deserialize)]
struct RenewTokenResponse {
    expires_at: String,
    renewed: bool,
}

fn decode<T: DeserializeOwned>(r: &common::Reply) -> T {
    assert!((200..300).contains(&r.status), "{} {:?}", r.status, r.body);
    serde_json::from_value(r.body.clone()).unwrap_or_else(|e| panic!("{e}: {:?}", r.body))
}

/// Alice's machine `mbp` with its daemon token and an agent on it.
async fn machine() -> Machine {
    common::machine(json!({"visibility": "workspace"})).await
}

impl Machine {
    /// Queues a task (with an issue) and returns its id.
    async fn queue(&self, prompt: &str, issue: Option<&str>) -> String {
        let r = self
            .app
            .post(
                &format!("/api/agents/{}/tasks", self.agent),
                &self.alice.token,
                json!({"prompt": prompt, "issue_id": issue}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }

    /// Claims the next task through the daemon; returns its id.
    async fn claim(&self) -> String {
        let r = self.app.claim(&self.daemon, &self.rt).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["task"]["id"].as_str().unwrap().to_string()
    }

    /// A successful daemon-token GET, read as the daemon's own reply type.
    async fn daemon_get<T: DeserializeOwned>(&self, path: &str) -> T {
        decode(&self.app.get(path, &self.daemon).await)
    }

    async fn daemon_post(&self, task: &str, what: &str, body: Value) -> common::Reply {
        self.app
            .post(
                &format!("/api/daemon/tasks/{task}/{what}"),
                &self.daemon,
                body,
            )
            .await
    }

    /// start → complete|fail through the daemon.
    async fn run(&self, task: &str, end: &str) {
        assert_eq!(self.daemon_post(task, "start", json!({})).await.status, 200);
        let r = self.daemon_post(task, end, json!({})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    async fn cancel(&self, task: &str) {
        let r = self
            .app
            .post(
                &format!("/api/tasks/{task}/cancel"),
                &self.alice.token,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    /// The task as people read it (`GET /api/agents/{id}/tasks`).
    async fn task(&self, task: &str) -> Value {
        let r = self
            .app
            .get(
                &format!("/api/agents/{}/tasks", self.agent),
                &self.alice.token,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == task)
            .expect("task listed")
            .clone()
    }
}

fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

/// `actual` is `expected` give or take a few seconds.
fn about(actual: &str, expected: DateTime<Utc>) {
    let actual = parse_time(actual);
    assert!(
        (actual - expected).num_seconds().abs() <= 5,
        "{actual} is not about {expected}"
    );
}

#[actix_web::test]
async fn recover_orphans_fails_the_work_a_restarted_daemon_left_behind() {
    let m = machine().await;
    let dispatched = m.queue("dispatched", None).await;
    let running = m.queue("running", None).await;
    let waiting = m.queue("waiting", None).await;
    assert_eq!(m.claim().await, dispatched);
    assert_eq!(m.claim().await, running);
    let r = m.daemon_post(&running, "start", json!({})).await;
    assert_eq!(r.status, 200);
    // another machine of alice's keeps its work
    let other_daemon = m.app.daemon_token(&m.alice.token, &m.ws, "laptop").await;
    let other_rt = m
        .app
        .runtime(&other_daemon, &m.ws, "laptop", "claude")
        .await;
    let other_agent = m
        .app
        .agent(&m.alice.token, &m.ws, &other_rt, json!({}))
        .await;
    let elsewhere = m.app.task(&m.alice.token, &other_agent, "x", 0).await;
    assert_eq!(m.app.claim(&other_daemon, &other_rt).await.status, 200);
    assert_eq!(m.app.agent_status(&m.agent), "working");
    let mut events = m.app.state.events.subscribe(m.ws.parse().unwrap());

    let path = format!("/api/daemon/runtimes/{}/recover-orphans", m.rt);
    let r = m.app.post(&path, &m.daemon, json!({})).await;
    let recovered: Recovered = decode(&r);
    // both failed for the infrastructure, and the agent allows 2 attempts
    assert_eq!((recovered.orphaned, recovered.retried), (2, 2));
    for task in [&dispatched, &running] {
        let row = m.task(task).await;
        assert_eq!(row["status"], "failed");
        assert_eq!(row["error"], "daemon restarted while task was in flight");
        assert_eq!(row["failure_reason"], "runtime_recovery");
        assert!(row["completed_at"].is_string());
    }
    assert_eq!(m.app.task_status(&waiting), "queued");
    assert_eq!(m.app.task_status(&elsewhere), "dispatched");
    assert_eq!(m.app.agent_status(&m.agent), "idle");
    let retries = m.app.select(
        "SELECT parent_task_id, attempt, status, prompt FROM agent_task_queue
         WHERE parent_task_id IS NOT NULL ORDER BY prompt",
    );
    assert_eq!(
        retries,
        [
            vec![
                json!(dispatched),
                json!(2),
                json!("queued"),
                json!("dispatched")
            ],
            vec![json!(running), json!(2), json!("queued"), json!("running")],
        ]
    );
    let seen: Vec<(String, Value)> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| (e.kind.to_string(), e.payload()))
        .collect();
    let failed: std::collections::BTreeSet<&str> = seen
        .iter()
        .filter(|(k, _)| k == "task:failed")
        .filter_map(|(_, p)| p["task_id"].as_str())
        .collect();
    assert_eq!(failed, [dispatched.as_str(), running.as_str()].into());
    assert!(seen.contains(&(
        "agent:status".into(),
        json!({"agent_id": m.agent, "status": "idle"})
    )));
    let retried: std::collections::BTreeSet<(String, i64)> = seen
        .iter()
        .filter(|(k, _)| k == "task:retried")
        .map(|(_, p)| {
            (
                p["parent_task_id"].as_str().unwrap().to_string(),
                p["attempt"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        retried,
        [(dispatched.clone(), 2), (running.clone(), 2)].into()
    );

    // the next start finds nothing left over
    let r = m.app.post(&path, &m.daemon, json!({})).await;
    let again: Recovered = decode(&r);
    assert_eq!((again.orphaned, again.active_tasks.len()), (0, 0));
}

/// `{id, status}` of each entry of an `active_tasks` list.
fn active(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[actix_web::test]
async fn a_daemon_that_comes_back_keeps_the_tasks_it_lists_and_loses_the_others() {
    let m = machine().await;
    let kept = m.queue("kept", None).await;
    let lost = m.queue("lost", None).await;
    assert_eq!(m.claim().await, kept);
    assert_eq!(m.claim().await, lost);
    assert_eq!(m.daemon_post(&kept, "start", json!({})).await.status, 200);
    let agent_row = |task: &str| json!({"id": task, "runtime_id": m.rt, "agent_id": m.agent});

    let heartbeat = || {
        m.app.post(
            "/api/daemon/heartbeat",
            &m.daemon,
            json!({"runtime_id": m.rt}),
        )
    };
    // an everyday heartbeat stays one read and lists nothing
    let hb = heartbeat().await;
    assert_eq!(hb.status, 200, "{:?}", hb.body);
    assert!(hb.body.get("active_tasks").is_none(), "{:?}", hb.body);
    // the one that brings the runtime back online tells the daemon which
    // tasks are still its own
    m.app.deregister(&m.daemon, &[&m.rt]).await;
    let hb = heartbeat().await;
    assert_eq!(
        active(&hb.body["active_tasks"]),
        [
            (kept.clone(), "running".into()),
            (lost.clone(), "dispatched".into())
        ]
    );
    let first = &hb.body["active_tasks"][0];
    assert_eq!(
        json!({"id": first["id"], "runtime_id": first["runtime_id"], "agent_id": first["agent_id"]}),
        agent_row(&kept)
    );

    // ids that are not task ids are refused, and nothing changes
    let path = format!("/api/daemon/runtimes/{}/recover-orphans", m.rt);
    let before = m.app.dump();
    for (body, error) in [
        (
            json!({"active_task_ids": ["nope"]}),
            "invalid active_task_ids[0]",
        ),
        (
            json!({"active_task_ids": vec![kept.clone(); 1001]}),
            "active_task_ids carries at most 1000 ids",
        ),
    ] {
        let r = m.app.post(&path, &m.daemon, body).await;
        assert_eq!(r.status, 400, "{:?}", r.body);
        assert!(r.error().starts_with(error), "{}", r.error());
    }
    let mut register = common::registration(&m.ws, "mbp", &["claude"]);
    register["active_task_ids"] = json!([kept, 7]);
    let r = m
        .app
        .post("/api/daemon/register", &m.daemon, register)
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(m.app.dump(), before);

    // a registration without the list (what Multica's daemons send)
    // reconciles nothing
    let r = m.app.register(&m.daemon, &m.ws, "mbp", &["claude"]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(active(&r.body["active_tasks"]).len(), 2);

    // registering again with only `kept` reconciles `lost`: it fails as
    // runtime_recovery and is retried; another runtime's task in the list
    // is not taken over
    let other_daemon = m.app.daemon_token(&m.alice.token, &m.ws, "laptop").await;
    let other_rt = m
        .app
        .runtime(&other_daemon, &m.ws, "laptop", "claude")
        .await;
    let other_agent = m
        .app
        .agent(&m.alice.token, &m.ws, &other_rt, json!({}))
        .await;
    let elsewhere = m.app.task(&m.alice.token, &other_agent, "x", 0).await;
    assert_eq!(m.app.claim(&other_daemon, &other_rt).await.status, 200);
    let register_listing = || {
        let mut register = common::registration(&m.ws, "mbp", &["claude"]);
        register["active_task_ids"] = json!([kept, elsewhere]);
        m.app.post("/api/daemon/register", &m.daemon, register)
    };
    // `lost` was claimed a moment ago: the daemon may not have heard of
    // that claim yet, so it is kept
    let r = register_listing().await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(active(&r.body["active_tasks"]).len(), 2);
    assert_eq!(m.app.task_status(&lost), "dispatched");
    // claimed a minute ago, it is the daemon's to know of
    let (id, at) = (parse_id(&lost), Timestamp::now() - Duration::seconds(60));
    m.app
        .arrange(move |conn| seed::backdate_task(conn, id, TaskClock::Dispatched, at));
    let mut events = m.app.state.events.subscribe(m.ws.parse().unwrap());
    let r = register_listing().await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        active(&r.body["active_tasks"]),
        [(kept.clone(), "running".into())]
    );
    let row = m.task(&lost).await;
    assert_eq!(
        (&row["status"], &row["failure_reason"], &row["error"]),
        (
            &json!("failed"),
            &json!("runtime_recovery"),
            &json!("daemon restarted while task was in flight")
        )
    );
    assert_eq!(m.app.task_status(&kept), "running");
    assert_eq!(m.app.task_status(&elsewhere), "dispatched");
    let seen: Vec<(String, Value)> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| (e.kind.to_string(), e.payload()))
        .collect();
    assert!(seen.contains(&(
        "task:failed".into(),
        json!({"task_id": lost, "agent_id": m.agent, "failure_reason": "runtime_recovery"})
    )));
    assert!(seen
        .iter()
        .any(|(k, p)| k == "task:retried" && p["parent_task_id"] == lost.as_str()));

    // the same through recover-orphans: the listed task stays
    let r = m
        .app
        .post(&path, &m.daemon, json!({"active_task_ids": [kept]}))
        .await;
    let recovered: Recovered = decode(&r);
    assert_eq!(recovered.orphaned, 0);
    assert_eq!(
        active(&json!(recovered.active_tasks)),
        [(kept.clone(), "running".into())]
    );
    assert_eq!(
        m.daemon_post(&kept, "complete", json!({})).await.status,
        200
    );
    m.app.deregister(&m.daemon, &[&m.rt]).await;
    assert_eq!(heartbeat().await.body["active_tasks"], json!([]));
}

#[actix_web::test]
async fn only_whoever_acts_for_the_runtime_recovers_its_orphans() {
    let m = machine().await;
    let task = m.queue("x", None).await;
    m.claim().await;
    let admin = m
        .app
        .add_user("adam@example.com", Some((&m.ws, Role::Admin)));
    let other_id = m.app.daemon_token(&m.alice.token, &m.ws, "laptop").await;
    let (mallory, mws) = m.app.init_user("mallory@example.com");
    let foreign = m.app.daemon_token(&mallory.token, &mws, "mbp").await;
    let path = format!("/api/daemon/runtimes/{}/recover-orphans", m.rt);
    let before = m.app.dump();
    for token in [&admin.token, &other_id, &mallory.token, &foreign] {
        let r = m.app.post(&path, token, json!({})).await;
        assert_eq!(r.status, 404, "{:?}", r.body);
        assert_eq!(r.error(), "runtime not found");
    }
    assert_eq!(before, m.app.dump());
    assert_eq!(m.app.task_status(&task), "dispatched");
    // alice's PAT acts for her own machine
    let r = m.app.post(&path, &m.alice.token, json!({})).await;
    assert_eq!(decode::<Recovered>(&r).orphaned, 1);
}

#[actix_web::test]
async fn a_prepare_lease_keeps_a_dispatched_task_past_the_dispatch_timeout() {
    let m = machine().await;
    let task = m.queue("slow to prepare", None).await;
    m.claim().await;
    // dispatched ten minutes ago: past the 300 s dispatch timeout
    let id = parse_id(&task);
    let ten_minutes_ago = || Timestamp::now() - Duration::seconds(600);
    let at = ten_minutes_ago();
    m.app
        .arrange(move |conn| seed::backdate_task(conn, id, TaskClock::Dispatched, at));
    let path = format!("/api/daemon/runtimes/{}/tasks/{task}/prepare-lease", m.rt);
    let r = m.app.post(&path, &m.daemon, json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["id"], task.as_str());
    assert_eq!(r.body["status"], "dispatched");
    let lease = r.body["prepare_lease_expires_at"].as_str().unwrap();
    about(lease, Utc::now() + Duration::seconds(45));

    assert_eq!(sweep_once(&m.app.state, &thresholds()).timed_out_tasks, 0);
    assert_eq!(m.app.task_status(&task), "dispatched");

    // a lease the daemon stopped renewing lapses, and the timeout applies
    let (at, rt) = (ten_minutes_ago(), parse_id(&m.rt));
    m.app
        .arrange(move |conn| tasks::set_prepare_lease(conn, id, rt, at).map(drop));
    assert_eq!(sweep_once(&m.app.state, &thresholds()).timed_out_tasks, 1);
    let row = m.task(&task).await;
    assert_eq!(row["status"], "failed");
    assert_eq!(row["error"], "task timed out");
    assert_eq!(row["prepare_lease_expires_at"], Value::Null);
}

#[actix_web::test]
async fn a_prepare_lease_is_for_a_dispatched_task_of_that_runtime() {
    let m = machine().await;
    let task = m.queue("x", None).await;
    let lease = |rt: &str| format!("/api/daemon/runtimes/{rt}/tasks/{task}/prepare-lease");
    // still queued: not dispatched to any runtime
    let r = m.app.post(&lease(&m.rt), &m.daemon, json!({})).await;
    assert_eq!((r.status, r.error()), (404, "task not found"));
    m.claim().await;
    // another runtime of the same machine
    let codex = m.app.runtime(&m.daemon, &m.ws, "mbp", "codex").await;
    let r = m.app.post(&lease(&codex), &m.daemon, json!({})).await;
    assert_eq!((r.status, r.error()), (404, "task not found"));
    // started: it is running, the lease has nothing left to protect
    let r = m.app.post(&lease(&m.rt), &m.daemon, json!({})).await;
    assert_eq!(r.status, 200);
    let r = m.daemon_post(&task, "start", json!({})).await;
    assert_eq!(r.body["prepare_lease_expires_at"], Value::Null);
    let r = m.app.post(&lease(&m.rt), &m.daemon, json!({})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error(),
        "cannot extend the prepare lease of task: it is running"
    );
    // nobody else's daemon may hold it
    let carol = m
        .app
        .add_user("carol@example.com", Some((&m.ws, Role::Member)));
    let r = m.app.post(&lease(&m.rt), &carol.token, json!({})).await;
    assert_eq!((r.status, r.error()), (404, "runtime not found"));
}

#[actix_web::test]
async fn a_pinned_session_shows_in_the_task() {
    let m = machine().await;
    let task = m.queue("x", None).await;
    m.claim().await;
    let path = format!("/api/daemon/tasks/{task}/session");
    let r = m
        .app
        .post(
            &path,
            &m.daemon,
            json!({"session_id": "sess-1", "work_dir": "/w/ws/t1/workdir"}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(r.body, Value::Null);
    let row = m.task(&task).await;
    assert_eq!(row["session_id"], "sess-1");
    assert_eq!(row["work_dir"], "/w/ws/t1/workdir");

    // one of them alone keeps the other; a later pin replaces
    let r = m
        .app
        .post(&path, &m.daemon, json!({"session_id": "sess-2"}))
        .await;
    assert_eq!(r.status, 204);
    let row = m.task(&task).await;
    assert_eq!(
        (&row["session_id"], &row["work_dir"]),
        (&json!("sess-2"), &json!("/w/ws/t1/workdir"))
    );

    let carol = m
        .app
        .add_user("carol@example.com", Some((&m.ws, Role::Member)));
    let before = m.app.dump();
    for (body, error) in [
        (json!({}), "session_id or work_dir is required"),
        (
            json!({"session_id": " ", "work_dir": ""}),
            "session_id or work_dir is required",
        ),
        (
            json!({"session_id": "s".repeat(256)}),
            "session_id is too long (at most 255 bytes)",
        ),
        (
            json!({"work_dir": "/".repeat(4097)}),
            "work_dir is too long (at most 4096 bytes)",
        ),
        (
            json!({"work_dir": "/tmp/\u{0}"}),
            "work_dir must not contain NUL characters",
        ),
    ] {
        let r = m.app.post(&path, &m.daemon, body).await;
        assert_eq!((r.status, r.error()), (400, error));
    }
    let r = m
        .app
        .post(&path, &carol.token, json!({"session_id": "x"}))
        .await;
    assert_eq!((r.status, r.error()), (404, "task not found"));
    assert_eq!(before, m.app.dump());

    // a pin may arrive after the user cancelled the run
    m.cancel(&task).await;
    let r = m
        .app
        .post(&path, &m.daemon, json!({"session_id": "sess-3"}))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(m.task(&task).await["session_id"], "sess-3");
}

#[actix_web::test]
async fn a_cancel_ack_records_where_the_cancelled_work_went_once() {
    let m = machine().await;
    let task = m.queue("x", None).await;
    m.claim().await;
    assert_eq!(m.daemon_post(&task, "start", json!({})).await.status, 200);
    m.cancel(&task).await;

    let ack = json!({"branch_name": "agent/fix-1", "durable_work_dir": "/home/a/repo",
                     "error_message": "worktree kept at /tmp/wt", "failure_reason": "local_directory_error"});
    let r = m.daemon_post(&task, "cancel-ack", ack).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, json!({"status": "ok"}));
    let row = m.task(&task).await;
    assert_eq!(row["status"], "cancelled");
    assert_eq!(row["branch_name"], "agent/fix-1");
    assert_eq!(row["durable_work_dir"], "/home/a/repo");
    assert_eq!(row["error"], "worktree kept at /tmp/wt");
    assert_eq!(row["failure_reason"], "local_directory_error");
    about(row["cancel_acked_at"].as_str().unwrap(), Utc::now());

    // a replay, or an ack saying something else, changes nothing
    let before = m.app.dump();
    let other = json!({"branch_name": "other", "error_message": "other"});
    for body in [other, json!({})] {
        assert_eq!(m.daemon_post(&task, "cancel-ack", body).await.status, 200);
    }
    let r = m
        .app
        .request(
            "POST",
            &format!("/api/daemon/tasks/{task}/cancel-ack"),
            Some(&m.daemon),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "an older daemon's empty ack");
    assert_eq!(before, m.app.dump());
}

#[actix_web::test]
async fn a_cancel_ack_on_a_task_that_was_not_cancelled_changes_nothing() {
    let m = machine().await;
    let task = m.queue("x", None).await;
    m.claim().await;
    m.run(&task, "complete").await;
    let carol = m
        .app
        .add_user("carol@example.com", Some((&m.ws, Role::Member)));
    let before = m.app.dump();
    let r = m
        .daemon_post(&task, "cancel-ack", json!({"branch_name": "late"}))
        .await;
    assert_eq!(r.body, json!({"status": "ok"}));
    assert_eq!(before, m.app.dump());
    let row = m.task(&task).await;
    assert_eq!(row["branch_name"], Value::Null);
    assert_eq!(row["cancel_acked_at"], Value::Null);

    let r = m
        .app
        .request(
            "POST",
            &format!("/api/daemon/tasks/{task}/cancel-ack"),
            Some(&m.daemon),
            Some("{oops"),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = m
        .daemon_post(&task, "cancel-ack", json!({"branch_name": 7}))
        .await;
    assert_eq!(r.status, 400);
    let r = m
        .app
        .post(
            &format!("/api/daemon/tasks/{task}/cancel-ack"),
            &carol.token,
            json!({}),
        )
        .await;
    assert_eq!((r.status, r.error()), (404, "task not found"));
    assert_eq!(before, m.app.dump());
}

#[actix_web::test]
async fn progress_and_messages_after_complete_still_reach_the_stream() {
    let m = machine().await;
    let queued = m.queue("waiting", None).await;
    let task = m.queue("x", None).await;
    let r = m.app.claim(&m.daemon, &m.rt).await;
    assert_eq!(r.body["task"]["id"], queued.as_str());
    let task_done = queued;
    m.run(&task_done, "complete").await;
    let mut events = m.app.state.events.subscribe(m.ws.parse().unwrap());

    let message = json!({"messages": [{"seq": 7, "type": "text", "content": "last words"}]});
    let r = m.daemon_post(&task_done, "messages", message.clone()).await;
    assert_eq!(r.body, json!({"status": "ok"}));
    let progress = json!({"summary": "Finishing task", "step": 2, "total": 2});
    let r = m
        .daemon_post(&task_done, "progress", progress.clone())
        .await;
    assert_eq!(r.status, 200);
    // an empty batch has nothing to show
    let r = m
        .daemon_post(&task_done, "messages", json!({"messages": []}))
        .await;
    assert_eq!(r.status, 200);
    let seen: Vec<(String, Value)> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| (e.kind.to_string(), e.payload()))
        .collect();
    let created_at = seen[0].1["created_at"].clone();
    assert!(created_at.is_string(), "{seen:?}");
    assert_eq!(
        seen,
        [
            (
                "task:message".to_string(),
                json!({"task_id": task_done, "agent_id": m.agent, "seq": 7, "type": "text",
                       "content": "last words", "created_at": created_at})
            ),
            (
                "task:progress".to_string(),
                json!({"task_id": task_done, "agent_id": m.agent, "data": progress})
            ),
        ]
    );

    for (what, body, error) in [
        (
            "progress",
            json!({"summary": 5}),
            "summary must be a string",
        ),
        (
            "progress",
            json!({"step": "two"}),
            "step must be an integer",
        ),
        (
            "messages",
            json!({"messages": "hi"}),
            "messages must be an array",
        ),
        (
            "messages",
            json!({"messages": [{"seq": 1, "type": "text"}, 3]}),
            "messages[1] must be an object",
        ),
    ] {
        let r = m.daemon_post(&task_done, what, body).await;
        assert_eq!((r.status, r.error()), (400, error));
    }
    // nothing has run a queued task, so nothing can report on it
    let r = m
        .daemon_post(&task, "progress", json!({"summary": "?"}))
        .await;
    assert_eq!(
        (r.status, r.error()),
        (400, "cannot report on task: it is queued")
    );
    assert!(events.try_recv().is_err());
}

#[actix_web::test]
async fn a_task_gc_check_says_whether_the_task_is_over() {
    let m = machine().await;
    let task = m.queue("x", None).await;
    m.claim().await;
    let path = format!("/api/daemon/tasks/{task}/gc-check");
    let status: TaskGcStatus = m.daemon_get(&path).await;
    assert_eq!(
        (status.status.as_str(), status.completed_at),
        ("dispatched", None)
    );
    m.run(&task, "fail").await;
    let status: TaskGcStatus = m.daemon_get(&path).await;
    assert_eq!(status.status, "failed");
    about(&status.completed_at.unwrap(), Utc::now());
    let carol = m
        .app
        .add_user("carol@example.com", Some((&m.ws, Role::Member)));
    let r = m.app.get(&path, &carol.token).await;
    assert_eq!((r.status, r.error()), (404, "task not found"));
}

#[actix_web::test]
async fn an_issue_is_open_while_any_of_its_tasks_waits_or_runs() {
    let m = machine().await;
    let path = "/api/daemon/issues/GH-42/gc-check";
    let r = m.app.get(path, &m.daemon).await;
    assert_eq!((r.status, r.error()), (404, "issue not found"));

    let first = m.queue("first", Some("GH-42")).await;
    let state: IssueGcStatus = m.daemon_get(path).await;
    assert_eq!(state.status, "todo");
    m.claim().await;
    let state: IssueGcStatus = m.daemon_get(path).await;
    assert_eq!(state.status, "in_progress");
    m.run(&first, "complete").await;
    let state: IssueGcStatus = m.daemon_get(path).await;
    assert_eq!(state.status, "done");
    about(&state.updated_at, Utc::now());

    // more work on the same issue opens it again, whatever ended before
    let second = m.queue("second", Some("GH-42")).await;
    let state: IssueGcStatus = m.daemon_get(path).await;
    assert_eq!(state.status, "todo");
    m.claim().await;
    m.run(&second, "fail").await;
    let state: IssueGcStatus = m.daemon_get(path).await;
    assert_eq!(state.status, "blocked", "a failure's directory is kept");
    let third = m.queue("third", Some("GH-42")).await;
    m.claim().await;
    m.cancel(&third).await;
    let state: IssueGcStatus = m.daemon_get(path).await;
    assert_eq!(state.status, "cancelled");

    let long = format!("/api/daemon/issues/{}/gc-check", "x".repeat(257));
    let r = m.app.get(&long, &m.daemon).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "issue_id is too long (at most 256 bytes)")
    );
}

#[actix_web::test]
async fn an_issue_is_made_of_the_tasks_the_caller_reaches() {
    let m = machine().await;
    let bob = m
        .app
        .add_user("bob@example.com", Some((&m.ws, Role::Member)));
    let bobs_daemon = m.app.daemon_token(&bob.token, &m.ws, "bob-mbp").await;
    let bobs_rt = m
        .app
        .runtime(&bobs_daemon, &m.ws, "bob-mbp", "claude")
        .await;
    m.app.share_runtime(&bob.token, &bobs_rt).await;
    let bobs_agent = m
        .app
        .agent(&m.alice.token, &m.ws, &bobs_rt, json!({}))
        .await;
    // alice's work on the issue is over; bob's is running
    let alices = m.queue("mine", Some("GH-7")).await;
    m.claim().await;
    m.run(&alices, "complete").await;
    let r = m
        .app
        .post(
            &format!("/api/agents/{bobs_agent}/tasks"),
            &m.alice.token,
            json!({"prompt": "bob's", "issue_id": "GH-7"}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(m.app.claim(&bobs_daemon, &bobs_rt).await.status, 200);

    let path = "/api/daemon/issues/GH-7/gc-check";
    let alice: IssueGcStatus = m.daemon_get(path).await;
    assert_eq!(alice.status, "done");
    let bob_sees: IssueGcStatus = decode(&m.app.get(path, &bobs_daemon).await);
    assert_eq!(bob_sees.status, "in_progress");
    // a manager's PAT acts for no machine it does not own
    let admin = m
        .app
        .add_user("adam@example.com", Some((&m.ws, Role::Admin)));
    let r = m.app.get(path, &admin.token).await;
    assert_eq!((r.status, r.error()), (404, "issue not found"));

    let batch = format!("/api/daemon/workspaces/{}/issues/gc-check", m.ws);
    let body = json!({"issue_ids": ["GH-7", "GH-404", "GH-7"]});
    let r: IssueGcBatch = decode(&m.app.post(&batch, &bobs_daemon, body.clone()).await);
    let answers: Vec<(&str, bool, Option<&str>)> = r
        .issues
        .iter()
        .map(|i| (i.id.as_str(), i.found, i.status.as_deref()))
        .collect();
    assert_eq!(
        answers,
        [
            ("GH-7", true, Some("in_progress")),
            ("GH-404", false, None),
            ("GH-7", true, Some("in_progress")),
        ]
    );
    assert!(r.issues[0].updated_at.is_some() && r.issues[1].updated_at.is_none());
    let r: IssueGcBatch = decode(&m.app.post(&batch, &admin.token, body.clone()).await);
    assert!(r.issues.iter().all(|i| !i.found), "{r:?}");
}

#[actix_web::test]
async fn a_batch_issue_check_is_bounded_and_kept_to_the_workspace() {
    let m = machine().await;
    m.queue("x", Some("GH-1")).await;
    let batch = format!("/api/daemon/workspaces/{}/issues/gc-check", m.ws);
    let r: IssueGcBatch = decode(&m.app.post(&batch, &m.daemon, json!({})).await);
    assert!(r.issues.is_empty());
    let ids: Vec<String> = (0..501).map(|i| format!("GH-{i}")).collect();
    let r = m
        .app
        .post(&batch, &m.daemon, json!({"issue_ids": ids}))
        .await;
    assert_eq!(
        (r.status, r.error()),
        (400, "a check names at most 500 issue_ids")
    );
    let r: IssueGcBatch = decode(
        &m.app
            .post(&batch, &m.daemon, json!({"issue_ids": &ids[..500]}))
            .await,
    );
    assert_eq!(r.issues.len(), 500);
    assert!(r.issues[1].found && !r.issues[0].found);
    let r = m
        .app
        .post(&batch, &m.daemon, json!({"issue_ids": ["x".repeat(257)]}))
        .await;
    assert_eq!(
        (r.status, r.error()),
        (400, "issue_id is too long (at most 256 bytes)")
    );
    let (mallory, mws) = m.app.init_user("mallory@example.com");
    let foreign = m.app.daemon_token(&mallory.token, &mws, "mbp").await;
    for token in [&mallory.token, &foreign] {
        let r = m
            .app
            .post(&batch, token, json!({"issue_ids": ["GH-1"]}))
            .await;
        assert_eq!((r.status, r.error()), (404, "workspace not found"));
        let r = m.app.get("/api/daemon/issues/GH-1/gc-check", token).await;
        assert_eq!((r.status, r.error()), (404, "issue not found"));
    }
}

#[actix_web::test]
async fn what_agenthub_does_not_have_is_answered_so_the_daemon_carries_on() {
    let m = machine().await;
    let repos: WorkspaceRepos = m
        .daemon_get(&format!("/api/daemon/workspaces/{}/repos", m.ws))
        .await;
    assert_eq!(repos.workspace_id, m.ws);
    assert!(repos.repos.iter().all(|r| !r.url.is_empty()) && repos.repos.is_empty());
    assert_eq!((repos.repos_version.as_str(), repos.settings), ("", None));
    let profiles: RuntimeProfiles = decode(
        &m.app
            .get(
                &format!("/api/daemon/workspaces/{}/runtime-profiles", m.ws),
                &m.alice.token,
            )
            .await,
    );
    assert_eq!(profiles.workspace_id, m.ws);
    assert!(profiles.runtime_profiles.iter().all(|p| !p.id.is_empty()));
    assert!(profiles.runtime_profiles.is_empty());

    // a 404 would make the daemon delete these directories
    let id = agenthub::domain::ChatSessionId::new();
    let chat: ChatSessionGcStatus = m
        .daemon_get(&format!("/api/daemon/chat-sessions/{id}/gc-check"))
        .await;
    assert_eq!(
        (chat.status.as_str(), chat.updated_at),
        ("unsupported", None)
    );
    let run: AutopilotRunGcStatus = m
        .daemon_get(&format!("/api/daemon/autopilot-runs/{id}/gc-check"))
        .await;
    assert_eq!(
        (run.status.as_str(), run.completed_at),
        ("unsupported", None)
    );

    let (mallory, mws) = m.app.init_user("mallory@example.com");
    let foreign = m.app.daemon_token(&mallory.token, &mws, "mbp").await;
    for token in [&mallory.token, &foreign] {
        for what in ["repos", "runtime-profiles"] {
            let r = m
                .app
                .get(&format!("/api/daemon/workspaces/{}/{what}", m.ws), token)
                .await;
            assert_eq!((r.status, r.error()), (404, "workspace not found"));
        }
    }
    let r = m
        .app
        .request(
            "GET",
            &format!("/api/daemon/chat-sessions/{id}/gc-check"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 401);
}

/// Sets a token's expiry `days` from now and its creation `age` days ago.
fn age_token(app: &TestApp, kind: TokenKind, token: &str, days: i64, age: i64) {
    let hash = agenthub::store::tokens::hash(token);
    let at = |d: i64| Timestamp::now() + Duration::days(d);
    let (created, expires) = (at(-age), at(days));
    let found = app.arrange(move |conn| seed::backdate_token(conn, kind, &hash, created, expires));
    assert!(found);
}

#[actix_web::test]
async fn renewal_extends_a_token_in_place_by_its_own_lifetime() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let renew = |token: String| {
        let app = &app;
        async move {
            app.post("/api/tokens/current/renew", &token, json!({}))
                .await
        }
    };
    // made without an expiry: nothing to extend
    let r: RenewTokenResponse = decode(&renew(alice.token.clone()).await);
    assert_eq!((r.expires_at.as_str(), r.renewed), ("", false));

    let made = app
        .post(
            "/api/tokens",
            &alice.token,
            json!({"name": "daemon", "expires_in_days": 30}),
        )
        .await;
    assert_eq!(made.status, 201);
    let pat = made.body["token"].as_str().unwrap().to_string();
    let r: RenewTokenResponse = decode(&renew(pat.clone()).await);
    assert!(!r.renewed, "a month left");
    about(&r.expires_at, Utc::now() + Duration::days(30));

    // a 30-day token with 3 days left gets 30 days again, and still works
    age_token(&app, TokenKind::Personal, &pat, 3, 27);
    let r: RenewTokenResponse = decode(&renew(pat.clone()).await);
    assert!(r.renewed);
    about(&r.expires_at, Utc::now() + Duration::days(30));
    assert_eq!(app.get("/api/me", &pat).await.status, 200);
    let listed = app.get("/api/tokens", &alice.token).await;
    let row = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == made.body["id"])
        .unwrap()
        .clone();
    assert_eq!(row["expires_at"].as_str(), Some(r.expires_at.as_str()));
    // renewed once: the next call finds it far from expiry
    let again: RenewTokenResponse = decode(&renew(pat.clone()).await);
    assert_eq!((again.expires_at, again.renewed), (r.expires_at, false));

    // a daemon token gets its 365 days again
    let daemon = app.daemon_token(&alice.token, &ws, "mbp").await;
    let r: RenewTokenResponse = decode(&renew(daemon.clone()).await);
    assert!(!r.renewed);
    age_token(&app, TokenKind::Daemon, &daemon, 2, 363);
    let r: RenewTokenResponse = decode(&renew(daemon.clone()).await);
    assert!(r.renewed);
    about(&r.expires_at, Utc::now() + Duration::days(365));
    // and the daemon goes on with the token it has
    let rt = app.runtime(&daemon, &ws, "mbp", "claude").await;
    assert!(!rt.is_empty());
}

#[actix_web::test]
async fn what_cannot_be_renewed_is_a_401() {
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    let made = app
        .post("/api/tokens", &alice.token, json!({"expires_in_days": 3}))
        .await;
    let pat = made.body["token"].as_str().unwrap().to_string();
    let id = made.body["id"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/api/tokens/{id}"), &alice.token)
            .await
            .status,
        200
    );
    let before = app.dump();
    let r = app.post("/api/tokens/current/renew", &pat, json!({})).await;
    assert_eq!((r.status, r.error()), (401, "token has been revoked"));
    // a task's token is single-purpose and short-lived
    let task_token = format!("mat_{}", "ab".repeat(20));
    let r = app
        .post("/api/tokens/current/renew", &task_token, json!({}))
        .await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    let r = app
        .request("POST", "/api/tokens/current/renew", None, None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(before, app.dump());
}
