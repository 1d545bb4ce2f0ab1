//! Shared helpers: every test gets the real app on a loopback port with its
//! own temporary SQLite file, and talks to it over HTTP.
#![allow(dead_code)]

pub mod ws;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agenthub::admin;
use agenthub::app::{Application, State};
use agenthub::config::Config;
use agenthub::domain::{Id, Role};
use agenthub::store::Store;
use serde_json::Value;

pub struct TestApp {
    pub base: String,
    pub db: Store,
    pub state: State,
    pub db_path: PathBuf,
    pub client: awc::Client,
    _dir: tempfile::TempDir,
}

/// A user made through the same code path as `agenthub init` / `user add`.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub token: String,
}

/// The HTTP reply: status and parsed JSON body (Null when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The `error` message of an error body.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.database.path = dir.join("agenthub.db");
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    adjust(&mut config);
    let db_path = config.database.path.clone();
    let app = Application::build(config).expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let db = state.db.clone();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        base,
        db,
        state,
        db_path,
        client: awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish(),
        _dir: dir,
    }
}

impl TestApp {
    /// `agenthub init`: a user owning a fresh workspace. Returns the user
    /// and the workspace id.
    pub fn init_user(&self, email: &str) -> (TestUser, String) {
        let done = admin::init(&self.db, email, None, Some("Team")).expect("init");
        (
            TestUser {
                id: done.user_id.to_string(),
                email: email.into(),
                token: done.token,
            },
            done.workspace_id.to_string(),
        )
    }

    /// `agenthub user add`, optionally into a workspace with a role.
    pub fn add_user(&self, email: &str, workspace: Option<(&str, Role)>) -> TestUser {
        let membership = workspace.map(|(w, r)| (w.parse::<Id>().expect("workspace id"), r));
        let done = admin::add_user(&self.db, email, None, membership).expect("user add");
        TestUser {
            id: done.user_id.to_string(),
            email: email.into(),
            token: done.token,
        }
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        self.request_with_headers(method, path, token, body, &[])
            .await
    }

    pub async fn request_with_headers(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            req = req.insert_header(("Authorization", format!("Bearer {token}")));
        }
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        let mut res = match body {
            Some(body) => req
                .insert_header(("Content-Type", "application/json"))
                .send_body(body.to_string())
                .await
                .expect("request"),
            None => req.send().await.expect("request"),
        };
        let bytes = res.body().limit(64 * 1024 * 1024).await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            // a non-JSON reply (metrics text) is kept as a string
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status: res.status().as_u16(),
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.request("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.request("POST", path, Some(token), Some(&body.to_string()))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.request("DELETE", path, Some(token), None).await
    }

    /// A direct connection to the app's file, for asserting on rows.
    pub fn sql(&self) -> rusqlite::Connection {
        open_sql(&self.db_path)
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.sql()
            .query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

pub fn open_sql(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open db");
    conn.busy_timeout(Duration::from_secs(10)).expect("busy");
    conn.execute_batch("PRAGMA foreign_keys = ON;").expect("fk");
    conn
}

/// The built `agenthub` binary.
pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agenthub"))
}

/// A `agenthub serve` process on a free loopback port.
pub struct ServerProcess {
    pub child: Child,
    pub base: String,
}

impl ServerProcess {
    /// Starts `agenthub serve --db <db>` in `dir` and waits until it answers.
    pub fn start(dir: &Path, db: &Path) -> ServerProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = binary()
            .current_dir(dir)
            .args(["serve", "--db"])
            .arg(db)
            .env("AGENTHUB_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn server");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        ServerProcess { child, base }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon-style registration body with one runtime per `(type, version)`.
pub fn registration(workspace: &str, daemon_id: &str, types: &[&str]) -> Value {
    serde_json::json!({
        "workspace_id": workspace,
        "daemon_id": daemon_id,
        "device_name": "mbp",
        "cli_version": "0.9.1",
        "runtimes": types
            .iter()
            .map(|t| serde_json::json!({"name": "", "type": t, "version": "1.2.3", "status": "online"}))
            .collect::<Vec<_>>(),
    })
}

impl TestApp {
    /// `POST /api/daemon/register`; returns the reply.
    pub async fn register(
        &self,
        token: &str,
        workspace: &str,
        daemon_id: &str,
        types: &[&str],
    ) -> Reply {
        self.post(
            "/api/daemon/register",
            token,
            registration(workspace, daemon_id, types),
        )
        .await
    }

    /// Registers one runtime and returns its id.
    pub async fn runtime(
        &self,
        token: &str,
        workspace: &str,
        daemon_id: &str,
        provider: &str,
    ) -> String {
        let r = self
            .register(token, workspace, daemon_id, &[provider])
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["runtimes"][0]["id"].as_str().unwrap().to_string()
    }

    /// A daemon token for `daemon_id`, minted by `user_token`'s user.
    pub async fn daemon_token(&self, user_token: &str, workspace: &str, daemon_id: &str) -> String {
        let r = self
            .post(
                &format!("/api/workspaces/{workspace}/daemon-tokens"),
                user_token,
                serde_json::json!({ "daemon_id": daemon_id }),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["token"].as_str().unwrap().to_string()
    }

    /// An agent row bound to `runtime` (written straight to the schema:
    /// the agent API is a capability of its own).
    pub fn insert_agent(
        &self,
        workspace: &str,
        runtime: &str,
        owner: &str,
        archived: bool,
    ) -> String {
        let id = Id::new().to_string();
        self.sql()
            .execute(
                "INSERT INTO agent (id, workspace_id, runtime_id, name, runtime_mode, owner_id,
                     archived_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'agent', 'local', ?4,
                     CASE WHEN ?5 THEN '2026-01-01T00:00:00.000Z' END,
                     '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
                rusqlite::params![id, workspace, runtime, owner, archived],
            )
            .expect("insert agent");
        id
    }

    /// The runtime an agent is bound to.
    pub fn agent_runtime(&self, agent: &str) -> String {
        self.sql()
            .query_row("SELECT runtime_id FROM agent WHERE id = ?1", [agent], |r| {
                r.get(0)
            })
            .expect("agent")
    }

    pub fn runtime_status(&self, runtime: &str) -> String {
        self.sql()
            .query_row(
                "SELECT status FROM agent_runtime WHERE id = ?1",
                [runtime],
                |r| r.get(0),
            )
            .expect("runtime")
    }
}

impl TestApp {
    /// `POST /api/agents` in `workspace` on `runtime`, with extra fields.
    pub async fn create_agent(
        &self,
        token: &str,
        workspace: &str,
        runtime: &str,
        extra: Value,
    ) -> Reply {
        let mut body = serde_json::json!({"name": "helper", "runtime_id": runtime});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                body.insert(k.clone(), v.clone());
            }
        }
        self.request_with_headers(
            "POST",
            "/api/agents",
            Some(token),
            Some(&body.to_string()),
            &[("X-Workspace-ID", workspace)],
        )
        .await
    }

    /// Creates an agent and returns its id.
    pub async fn agent(&self, token: &str, workspace: &str, runtime: &str, extra: Value) -> String {
        let r = self.create_agent(token, workspace, runtime, extra).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }

    /// Queues a task and returns its id.
    pub async fn task(&self, token: &str, agent: &str, prompt: &str, priority: i64) -> String {
        let r = self
            .post(
                &format!("/api/agents/{agent}/tasks"),
                token,
                serde_json::json!({"prompt": prompt, "priority": priority}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }

    /// `POST /api/daemon/runtimes/{runtime}/tasks/claim`.
    pub async fn claim(&self, token: &str, runtime: &str) -> Reply {
        self.post(
            &format!("/api/daemon/runtimes/{runtime}/tasks/claim"),
            token,
            serde_json::json!({}),
        )
        .await
    }

    pub fn task_status(&self, task: &str) -> String {
        self.sql()
            .query_row(
                "SELECT status FROM agent_task_queue WHERE id = ?1",
                [task],
                |r| r.get(0),
            )
            .expect("task")
    }

    pub fn agent_status(&self, agent: &str) -> String {
        self.sql()
            .query_row("SELECT status FROM agent WHERE id = ?1", [agent], |r| {
                r.get(0)
            })
            .expect("agent")
    }
}

/// Polls `check` every 50 ms until it holds or `secs` pass.
pub async fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

impl TestApp {
    /// Moves a runtime's last_seen_at `secs` into the past.
    pub fn age_runtime(&self, runtime: &str, secs: i64) {
        self.sql()
            .execute(
                "UPDATE agent_runtime SET last_seen_at =
                     strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d seconds', ?2))
                 WHERE id = ?1",
                rusqlite::params![runtime, secs],
            )
            .expect("age runtime");
    }
}

impl TestApp {
    /// Sends raw bytes (possibly not UTF-8, possibly not JSON) with the
    /// given header values (which may be raw bytes too); returns the status.
    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Vec<u8>,
        headers: &[(&str, Vec<u8>)],
    ) -> (u16, String) {
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .insert_header(("Content-Type", "application/json"));
        for (name, value) in headers {
            let value = awc::http::header::HeaderValue::from_bytes(value).expect("header value");
            req = req.insert_header((*name, value));
        }
        let mut res = req.send_body(body).await.expect("request");
        let bytes = res.body().limit(64 * 1024 * 1024).await.expect("body");
        (
            res.status().as_u16(),
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    /// Every row of every table as text, to prove a request changed nothing
    /// (a PAT's last_used_at is left out: using a token records its use).
    pub fn dump(&self) -> String {
        let conn = self.sql();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'refinery%' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut out = String::new();
        for table in tables {
            let sql = if table == "personal_access_token" {
                "SELECT id, revoked_at, expires_at FROM personal_access_token ORDER BY id"
                    .to_string()
            } else {
                format!("SELECT * FROM \"{table}\"")
            };
            let mut stmt = conn.prepare(&sql).unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    (0..n)
                        .map(|i| {
                            r.get::<_, rusqlite::types::Value>(i)
                                .map(|v| format!("{v:?}"))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap();
            let mut lines: Vec<String> = rows
                .map(|row| format!("{table}: {}\n", row.unwrap().join("|")))
                .collect();
            lines.sort();
            out.extend(lines);
        }
        out
    }

    /// (method, path template) of every route in /api/openapi.json.
    pub async fn documented_routes(&self) -> Vec<(String, String)> {
        let doc = self
            .request("GET", "/api/openapi.json", None, None)
            .await
            .body;
        let mut routes = Vec::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                routes.push((method.clone(), path.clone()));
            }
        }
        routes
    }
}

impl TestApp {
    /// The member id of `user_id` in `ws`, as `token`'s user sees the
    /// member list.
    pub async fn member_id(&self, token: &str, ws: &str, user_id: &str) -> String {
        let r = self
            .get(&format!("/api/workspaces/{ws}/members"), token)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body
            .as_array()
            .and_then(|members| members.iter().find(|m| m["user_id"] == user_id))
            .and_then(|m| m["id"].as_str())
            .expect("member listed")
            .to_string()
    }

    /// Removes `user_id` from `ws` as `token`'s user (an owner or admin).
    pub async fn remove_member(&self, token: &str, ws: &str, user_id: &str) {
        let member = self.member_id(token, ws, user_id).await;
        let r = self
            .delete(&format!("/api/workspaces/{ws}/members/{member}"), token)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
}
