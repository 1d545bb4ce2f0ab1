//! Shared helpers: every test gets the real app on a loopback port with a
//! database of its own, and talks to it over HTTP. The database is a
//! temporary SQLite file, or, when `AGENTHUB_TEST_POSTGRES` names a
//! PostgreSQL server (`scripts/postgres.sh start` prints one), a fresh
//! schema of its own there: the same suite runs on both engines.
//!
//! Tests arrange state through the HTTP API, or through store operations
//! (`agenthub::store::seed` for what the API cannot make quickly) with
//! [`TestApp::arrange`]; they never write SQL. Reads for assertions go
//! through [`TestApp::inspect`] (store reads) or [`select_in`] (portable
//! SELECTs). What only SQLite can do (faults, file checks) lives in
//! [`sqlite`], the one module another engine has to port.
#![allow(dead_code)]

pub mod faults;
pub mod sqlite;
pub mod writes;
pub mod ws;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agenthub::admin;
use agenthub::app::{Application, State};
use agenthub::config::{Config, SweeperConfig};
use agenthub::domain::{AgentId, Role, Timestamp, WorkspaceId};
use agenthub::store::seed::{self, SeedAgent, TokenKind};
use agenthub::store::{self, agents, runtimes, tasks, Conn, Store};
use serde_json::Value;

pub struct TestApp {
    pub base: String,
    pub db: Store,
    pub state: State,
    /// The SQLite file (on PostgreSQL, a path nothing is at).
    pub db_path: PathBuf,
    /// Where the app's data is, for portable SELECTs.
    pub database: TestDb,
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

/// The PostgreSQL server the suite runs against, if any: the URL of a
/// database on it that the test role may create schemas in.
pub fn postgres_server() -> Option<String> {
    std::env::var("AGENTHUB_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.is_empty())
}

/// Whether this run of the suite is on PostgreSQL.
pub fn on_postgres() -> bool {
    postgres_server().is_some()
}

/// Where a test's data lives.
#[derive(Clone, Debug)]
pub enum TestDb {
    Sqlite(PathBuf),
    /// A URL whose connections see one fresh schema first.
    Postgres(String),
}

impl TestDb {
    /// A new, empty database: a file in `dir`, or a new schema on the
    /// suite's PostgreSQL server.
    pub fn fresh(dir: &Path) -> TestDb {
        match postgres_server() {
            Some(server) => TestDb::Postgres(fresh_schema(&server)),
            None => TestDb::Sqlite(dir.join("agenthub.db")),
        }
    }

    /// The `database.url` that selects it (`None`: the SQLite file).
    pub fn url(&self) -> Option<&str> {
        match self {
            TestDb::Sqlite(_) => None,
            TestDb::Postgres(url) => Some(url),
        }
    }
}

impl From<&PathBuf> for TestDb {
    fn from(path: &PathBuf) -> TestDb {
        TestDb::Sqlite(path.clone())
    }
}

impl From<&TestDb> for TestDb {
    fn from(db: &TestDb) -> TestDb {
        db.clone()
    }
}

impl TestDb {
    /// Points an `agenthub` command at this database (`--db` must be an
    /// option of the command's subcommand).
    pub fn point(&self, cmd: &mut Command) {
        match self {
            TestDb::Sqlite(path) => {
                cmd.arg("--db").arg(path);
            }
            TestDb::Postgres(url) => {
                cmd.env("AGENTHUB_DATABASE_URL", url);
            }
        }
    }
}

/// Makes a schema of its own on `server` and returns a URL whose
/// connections use it.
fn fresh_schema(server: &str) -> String {
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    off_runtime(|| {
        let mut client = postgres::Client::connect(server, postgres::NoTls)
            .unwrap_or_else(|e| panic!("AGENTHUB_TEST_POSTGRES={server}: {e}"));
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .expect("create schema");
    });
    let sep = if server.contains('?') { '&' } else { '?' };
    format!("{server}{sep}options=-c%20search_path%3D{schema}")
}

pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.database.path = dir.join("agenthub.db");
    if let TestDb::Postgres(url) = TestDb::fresh(dir) {
        config.database.url = Some(url);
    }
    config
}

/// The database `config` points at.
pub fn test_db_of(config: &Config) -> TestDb {
    match &config.database.url {
        Some(url) => TestDb::Postgres(url.clone()),
        None => TestDb::Sqlite(config.database.path.clone()),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    adjust(&mut config);
    let db_path = config.database.path.clone();
    let database = test_db_of(&config);
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
        database,
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
        let membership =
            workspace.map(|(w, r)| (w.parse::<WorkspaceId>().expect("workspace id"), r));
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
        let to = Server {
            client: &self.client,
            base: &self.base,
        };
        to.request(method, path, token, body, headers).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.request("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.request("POST", path, Some(token), Some(&body.to_string()))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Reply {
        self.request("PUT", path, Some(token), Some(&body.to_string()))
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.request("PATCH", path, Some(token), Some(&body.to_string()))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.request("DELETE", path, Some(token), None).await
    }

    /// Runs store operations in one write transaction of the app's own
    /// store: how a test arranges a state the HTTP API cannot make
    /// quickly (`agenthub::store::seed`), on whichever engine runs.
    pub fn arrange<T, F>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(&Conn<'_>) -> store::Result<T> + Send + 'static,
    {
        self.db
            .write_blocking(f)
            .expect("arrange through the store")
    }

    /// Runs store read operations, for assertions on what is stored.
    pub fn inspect<T: Send>(&self, f: impl FnOnce(&Conn<'_>) -> store::Result<T> + Send) -> T {
        self.db.read_blocking(f).expect("read through the store")
    }

    /// The rows of a portable SELECT (see [`select_in`]).
    pub fn select(&self, sql: &str) -> Vec<Vec<Value>> {
        select_in(&self.database, sql)
    }

    /// The number a portable `SELECT count(*) …` answers.
    pub fn count(&self, sql: &str) -> i64 {
        count_in(&self.database, sql)
    }

    /// The first column of a portable SELECT's rows, as text.
    pub fn column(&self, sql: &str) -> Vec<String> {
        self.select(sql)
            .into_iter()
            .map(|row| match &row[0] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
    }
}

/// Runs `sql`, a plain SELECT without parameters that every engine runs
/// alike (no engine functions, values written in), on `db`; each row's
/// columns as JSON values, in the form SQLite stores them (ids and times
/// as their text, integers as numbers). The one place tests read the
/// database with SQL.
pub fn select_in(db: impl Into<TestDb>, sql: &str) -> Vec<Vec<Value>> {
    let db = db.into();
    let path = match &db {
        TestDb::Sqlite(path) => path,
        TestDb::Postgres(url) => return postgres_select(url, sql),
    };
    let conn = sqlite::open_sql(path);
    let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let n = stmt.column_count();
    let rows = stmt
        .query_map([], |r| (0..n).map(|i| r.get(i).map(json_of)).collect())
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Runs SQL statements on one connection to the test's database
/// (temporary tables live as long as it does): for states no route makes.
pub fn batch(db: &TestDb, sql: &str) {
    match db {
        TestDb::Sqlite(path) => sqlite::open_sql(path)
            .execute_batch(sql)
            .unwrap_or_else(|e| panic!("{e}")),
        TestDb::Postgres(url) => off_runtime(|| {
            postgres::Client::connect(url, postgres::NoTls)
                .and_then(|mut c| c.batch_execute(sql))
                .unwrap_or_else(|e| panic!("{e}"))
        }),
    }
}

/// Runs `f` on a thread of its own: the synchronous PostgreSQL driver runs
/// a runtime of its own, which cannot start inside a test's.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(f).join())
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// [`select_in`] on PostgreSQL.
fn postgres_select(url: &str, sql: &str) -> Vec<Vec<Value>> {
    off_runtime(|| postgres_rows(url, sql))
}

fn postgres_rows(url: &str, sql: &str) -> Vec<Vec<Value>> {
    use postgres::types::Type;
    let mut client =
        postgres::Client::connect(url, postgres::NoTls).unwrap_or_else(|e| panic!("{url}: {e}"));
    let rows = client
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let column = |row: &postgres::Row, i: usize| -> Value {
        let ty = row.columns()[i].type_();
        let text = |v: Option<String>| v.map_or(Value::Null, Value::from);
        match *ty {
            Type::INT2 => row
                .get::<_, Option<i16>>(i)
                .map_or(Value::Null, Value::from),
            Type::INT4 => row
                .get::<_, Option<i32>>(i)
                .map_or(Value::Null, Value::from),
            Type::INT8 => row
                .get::<_, Option<i64>>(i)
                .map_or(Value::Null, Value::from),
            Type::FLOAT8 => row
                .get::<_, Option<f64>>(i)
                .map_or(Value::Null, Value::from),
            Type::BOOL => row
                .get::<_, Option<bool>>(i)
                .map_or(Value::Null, |b| Value::from(i64::from(b))),
            Type::UUID => text(row.get::<_, Option<uuid::Uuid>>(i).map(|u| u.to_string())),
            Type::TIMESTAMPTZ => text(
                row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(i)
                    .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
            ),
            Type::DATE => text(
                row.get::<_, Option<chrono::NaiveDate>>(i)
                    .map(|d| d.format("%Y-%m-%d").to_string()),
            ),
            Type::JSONB | Type::JSON => text(row.get::<_, Option<Value>>(i).map(|v| v.to_string())),
            Type::NUMERIC => panic!("{sql}: cast numeric columns to bigint"),
            _ => text(row.get::<_, Option<String>>(i)),
        }
    };
    rows.iter()
        .map(|row| (0..row.len()).map(|i| column(row, i)).collect())
        .collect()
}

/// [`select_in`] for a `SELECT count(*) …`.
pub fn count_in(db: impl Into<TestDb>, sql: &str) -> i64 {
    select_in(db, sql)
        .first()
        .and_then(|row| row.first())
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("{sql}: not a count"))
}

fn json_of(value: rusqlite::types::Value) -> Value {
    use rusqlite::types::Value as V;
    match value {
        V::Null => Value::Null,
        V::Integer(i) => i.into(),
        V::Real(f) => f.into(),
        V::Text(s) => s.into(),
        V::Blob(b) => panic!("a blob column ({} bytes) in a test read", b.len()),
    }
}

/// The built `agenthub` binary.
pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agenthub"))
}

/// A server reached over HTTP: an in-process app's or a process's.
#[derive(Clone, Copy)]
pub struct Server<'a> {
    pub client: &'a awc::Client,
    pub base: &'a str,
}

impl Server<'_> {
    /// Sends `method path` (with a bearer `token`, a JSON `body` and more
    /// `headers`, each if given); the reply's status and JSON body.
    pub async fn request(
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
        self.request("GET", path, Some(token), None, &[]).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        let body = body.to_string();
        self.request("POST", path, Some(token), Some(&body), &[])
            .await
    }
}

/// `agenthub init --json` in `dir` on `db`: its JSON (`token`,
/// `workspace_id`, …).
pub fn cli_init(dir: &Path, db: &TestDb) -> Value {
    let mut init = binary();
    init.current_dir(dir)
        .args(["init", "--email", "ops@example.com", "--json"]);
    db.point(&mut init);
    let out = init.output().expect("run init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("init's JSON")
}

/// A `agenthub serve` process on a free loopback port.
pub struct ServerProcess {
    pub child: Child,
    pub base: String,
}

impl ServerProcess {
    /// Starts `agenthub serve` on `db` in `dir` and waits until it answers.
    pub fn start(dir: &Path, db: impl Into<TestDb>) -> ServerProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut command = binary();
        command.current_dir(dir).arg("serve");
        db.into().point(&mut command);
        let child = command
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

    /// Its owner lets the workspace's owners and admins bind agents to the
    /// runtime (`visibility: workspace`).
    pub async fn share_runtime(&self, owner_token: &str, runtime: &str) {
        let r = self
            .request(
                "PATCH",
                &format!("/api/runtimes/{runtime}"),
                Some(owner_token),
                Some(r#"{"visibility": "workspace"}"#),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["visibility"], "workspace");
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

    /// An agent row bound to `runtime` (seeded through the store: the
    /// agent API is a capability of its own).
    pub fn insert_agent(
        &self,
        workspace: &str,
        runtime: &str,
        owner: &str,
        archived: bool,
    ) -> String {
        let id = AgentId::new();
        let (workspace, runtime, owner) = (parse_id(workspace), parse_id(runtime), parse_id(owner));
        self.arrange(move |conn| {
            let at = "2026-01-01T00:00:00.000Z".parse().unwrap();
            seed::agent(
                conn,
                &SeedAgent {
                    id,
                    workspace,
                    runtime,
                    name: "agent",
                    owner,
                    archived_at: archived.then_some(at),
                    created_at: at,
                },
            )
        });
        id.to_string()
    }

    /// The stored runtime `id`.
    pub fn runtime_row(&self, id: &str) -> runtimes::Runtime {
        let id = parse_id(id);
        self.inspect(|conn| runtimes::get(conn, id))
            .expect("runtime stored")
    }

    /// The stored agent `id`.
    pub fn agent_row(&self, id: &str) -> agents::Agent {
        let id = parse_id(id);
        self.inspect(|conn| agents::get(conn, id))
            .expect("agent stored")
    }

    /// The stored task `id`.
    pub fn task_row(&self, id: &str) -> tasks::Task {
        let id = parse_id(id);
        self.inspect(|conn| tasks::get(conn, id))
            .expect("task stored")
    }

    /// The runtime an agent is bound to ("" when it has none).
    pub fn agent_runtime(&self, agent: &str) -> String {
        self.agent_row(agent)
            .runtime_id
            .map(|r| r.to_string())
            .unwrap_or_default()
    }

    pub fn runtime_status(&self, runtime: &str) -> String {
        self.runtime_row(runtime).status.to_string()
    }

    /// `POST /api/daemon/deregister` of `runtimes`: they go offline the
    /// way a daemon that stops takes them offline.
    pub async fn deregister(&self, token: &str, runtimes: &[&str]) {
        let r = self
            .post(
                "/api/daemon/deregister",
                token,
                serde_json::json!({ "runtime_ids": runtimes }),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    /// Brings `user` into `ws` as `role` the way people do: `inviter`
    /// invites their address and they accept.
    pub async fn join(&self, inviter: &str, ws: &str, user: &TestUser, role: &str) {
        let r = self
            .post(
                &format!("/api/workspaces/{ws}/members"),
                inviter,
                serde_json::json!({ "email": user.email, "role": role }),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let invitation = r.body["id"].as_str().expect("invitation id");
        let r = self
            .post(
                &format!("/api/invitations/{invitation}/accept"),
                &user.token,
                serde_json::json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    /// Makes `token` (of `kind`) one that has run out.
    pub fn expire_token(&self, kind: TokenKind, token: &str) {
        let hash = store::tokens::hash(token);
        let past = "2000-01-01T00:00:00.000Z".parse().unwrap();
        let found = self.arrange(move |conn| seed::expire_token(conn, kind, &hash, past));
        assert!(found, "no such {kind:?} token");
    }
}

/// An id the app handed out (or a test made).
pub fn parse_id<I: std::str::FromStr<Err = String>>(id: &str) -> I {
    id.parse()
        .unwrap_or_else(|e| panic!("{id} is not an id: {e:?}"))
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
        self.task_row(task).status.to_string()
    }

    pub fn agent_status(&self, agent: &str) -> String {
        self.agent_row(agent).status.to_string()
    }
}

/// Alice, her workspace, a daemon token for her machine `mbp`, one runtime
/// of it and an agent on it, made with `agent_extra`.
pub struct Machine {
    pub app: TestApp,
    pub alice: TestUser,
    pub ws: String,
    pub daemon: String,
    pub rt: String,
    pub agent: String,
}

pub async fn machine(agent_extra: Value) -> Machine {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let daemon = app.daemon_token(&alice.token, &ws, "mbp").await;
    let rt = app.runtime(&daemon, &ws, "mbp", "claude").await;
    let agent = app.agent(&alice.token, &ws, &rt, agent_extra).await;
    Machine {
        app,
        alice,
        ws,
        daemon,
        rt,
        agent,
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

/// Thresholds for tests that call the sweep directly: only what a test
/// ages past them is affected.
pub fn thresholds() -> SweeperConfig {
    SweeperConfig {
        interval_secs: 3600,
        stale_after_secs: 60,
        offline_runtime_ttl_secs: 3600,
        dispatch_timeout_secs: 300,
        running_timeout_secs: 9000,
        reconnect_grace_secs: 10_800,
        queued_ttl_secs: 7200,
    }
}

impl TestApp {
    /// Runs `change` in a write transaction that keeps the writer's turn
    /// for a second after it ran, and returns once it ran: a request sent
    /// meanwhile reads the database as it was before `change`, and its own
    /// write waits until `change` is committed.
    pub async fn while_a_write_commits(
        &self,
        change: impl FnOnce(&Conn<'_>) -> store::Result<()> + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let ran = Arc::new(AtomicBool::new(false));
        let signal = ran.clone();
        let db = self.db.clone();
        let writer = std::thread::spawn(move || {
            db.write_blocking(move |tx| -> store::Result<()> {
                change(tx)?;
                signal.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_secs(1));
                Ok(())
            })
            .unwrap();
        });
        assert!(eventually(10, || ran.load(Ordering::SeqCst)).await);
        writer
    }
}

impl TestApp {
    /// The runtimes of `ws` as people list them.
    pub async fn listed_runtimes(&self, token: &str, ws: &str) -> Vec<Value> {
        let r = self
            .get(&format!("/api/runtimes?workspace_id={ws}"), token)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body.as_array().unwrap().clone()
    }

    /// One runtime of `ws` as people list it.
    pub async fn listed_runtime(&self, token: &str, ws: &str, id: &str) -> Value {
        self.listed_runtimes(token, ws)
            .await
            .into_iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("runtime {id} not listed"))
    }
}

impl TestApp {
    /// Moves every ping and update `secs` into the past, as if that much
    /// time had passed.
    pub fn age_probes(&self, secs: i64) {
        self.arrange(move |conn| seed::age_probes(conn, chrono::Duration::seconds(secs)));
    }

    /// Moves a runtime's last_seen_at `secs` into the past.
    pub fn age_runtime(&self, runtime: &str, secs: i64) {
        let id = parse_id(runtime);
        let at = Timestamp::now() - chrono::Duration::seconds(secs);
        self.arrange(move |conn| seed::backdate_runtime(conn, id, at));
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
        self.inspect(seed::dump)
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

/// Opens `GET /api/events` for `ws` with `token` (200, or the test fails).
pub async fn follow(
    app: &TestApp,
    token: &str,
    ws: &str,
) -> impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin
{
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let res = client
        .get(format!("{}/api/events?workspace_id={ws}", app.base))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .expect("stream request");
    assert_eq!(res.status().as_u16(), 200);
    res
}

/// Reads the SSE body until `needle` appears (or 10 s pass); returns what
/// was read.
pub async fn read_until<S, E>(body: &mut S, needle: &str) -> String
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, E>> + Unpin,
    E: std::fmt::Debug,
{
    read_within(body, needle, Duration::from_secs(10)).await
}

pub async fn read_within<S, E>(body: &mut S, needle: &str, limit: Duration) -> String
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, E>> + Unpin,
    E: std::fmt::Debug,
{
    let mut text = String::new();
    let deadline = std::time::Instant::now() + limit;
    while !text.contains(needle) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let chunk = actix_web::rt::time::timeout(left, futures_util::StreamExt::next(body))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in {text:?}"))
            .expect("stream open")
            .expect("chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}
