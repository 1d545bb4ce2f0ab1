//! What the benchmarks share: the real `agenthub` binary, started on a
//! free loopback port in a directory of the benchmark's, and rows seeded
//! straight into the store. Each benchmark uses only part of it.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agenthub::domain::{AgentId, RuntimeId, Timestamp, UserId, WorkspaceId};
use agenthub::store::seed::{self, SeedAgent};
use agenthub::store::Conn;

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary the benchmarks run: `AGENTHUB_BENCH_BIN` when set (another
/// build, to compare two in one run), else the one built with them.
pub fn binary() -> String {
    std::env::var("AGENTHUB_BENCH_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_agenthub").to_string())
}

/// Starts `agenthub serve --db <db>` in `dir` and waits until it answers.
pub fn start_server(dir: &std::path::Path, db: &str) -> Server {
    start_node(dir, db, None)
}

/// [`start_server`] on the PostgreSQL database at `url` when given.
pub fn start_node(dir: &std::path::Path, db: &str, url: Option<&str>) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut command = Command::new(binary());
    if let Some(url) = url {
        command.env("AGENTHUB_DATABASE_URL", url);
    }
    let child = command
        .current_dir(dir)
        .args(["serve", "--db", db])
        .env("AGENTHUB_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start agenthub");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// Seeds an agent named `a` on `runtime`, as a fleet of machines has them.
pub fn seed_agent(
    tx: &Conn<'_>,
    workspace: WorkspaceId,
    runtime: RuntimeId,
    owner: UserId,
    created_at: Timestamp,
) -> agenthub::store::Result<AgentId> {
    let id = AgentId::new();
    let row = SeedAgent {
        id,
        workspace,
        runtime,
        name: "a",
        owner,
        archived_at: None,
        created_at,
    };
    seed::agent(tx, &row)?;
    Ok(id)
}
