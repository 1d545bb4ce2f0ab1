//! Several agenthub nodes on one PostgreSQL database: the sweeper runs on
//! one node at a time, and another takes it over when that node dies.
//! PostgreSQL only: a SQLite file has one server process.

mod common;

use std::time::Duration;

use common::{on_postgres, ServerProcess, TestDb};

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
    if !on_postgres() {
        // one SQLite file has one server: there is no other node
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[sweeper]\ninterval_secs = 1\n",
    )
    .unwrap();
    let db = TestDb::fresh(dir.path());
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
