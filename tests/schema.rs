//! The constraints of SPEC §3 live in the database itself, on either
//! engine: these statements go straight to the SQLite file or the
//! PostgreSQL schema the store migrated, bypassing the API and the store,
//! and the engine refuses them.

mod common;

use agenthub::config::DatabaseConfig;
use agenthub::store::Store;
use common::TestDb;
use serde_json::{json, Value};

const WS: &str = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
const USER: &str = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";
const RT: &str = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";
const AGENT: &str = "dddddddd-dddd-4ddd-8ddd-dddddddddddd";
const TASK: &str = "eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee";
const T: &str = "2026-01-01T00:00:00.000Z";

/// A connection of its own to a migrated database of the engine this run
/// uses (see `common::TestDb`).
enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

/// A migrated database and a raw SQL connection to it.
struct Db {
    conn: Conn,
    db: TestDb,
    _dir: tempfile::TempDir,
}

/// Why a statement did not run.
#[derive(Debug)]
struct Failure {
    /// refused by a constraint (UNIQUE, FOREIGN KEY, CHECK, NOT NULL)
    constraint: bool,
    message: String,
}

impl Db {
    /// Runs `sql` (statements with their values written in).
    fn run(&mut self, sql: &str) -> Result<(), Failure> {
        match &mut self.conn {
            Conn::Sqlite(conn) => conn.execute_batch(sql).map_err(|e| Failure {
                constraint: matches!(&e, rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation),
                message: e.to_string(),
            }),
            Conn::Postgres(client) => client.batch_execute(sql).map_err(|e| {
                use postgres::error::SqlState;
                let constraint = [
                    SqlState::UNIQUE_VIOLATION,
                    SqlState::FOREIGN_KEY_VIOLATION,
                    SqlState::CHECK_VIOLATION,
                    SqlState::NOT_NULL_VIOLATION,
                    SqlState::RESTRICT_VIOLATION,
                ]
                .iter()
                .any(|state| e.code() == Some(state));
                Failure {
                    constraint,
                    message: format!("{e:?}"),
                }
            }),
        }
    }

    /// Runs `sql`, which the database accepts.
    fn ok(&mut self, sql: &str) {
        if let Err(failure) = self.run(sql) {
            panic!("{sql}: {}", failure.message);
        }
    }

    /// Whether the database refuses `sql` by a constraint.
    fn refused(&mut self, sql: &str) -> bool {
        match self.run(sql) {
            Ok(()) => false,
            Err(failure) => {
                assert!(
                    failure.constraint,
                    "{sql}: failed, but not by a constraint: {}",
                    failure.message
                );
                true
            }
        }
    }

    /// The rows of a portable SELECT, as `common::select_in` gives them.
    fn select(&self, sql: &str) -> Vec<Vec<Value>> {
        common::select_in(&self.db, sql)
    }

    fn count(&self, sql: &str) -> i64 {
        common::count_in(&self.db, sql)
    }
}

/// A migrated database holding one workspace, user, runtime, agent, task
/// and task usage row.
fn seeded() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::fresh(dir.path());
    let config = match &db {
        TestDb::Sqlite(path) => DatabaseConfig {
            path: path.clone(),
            ..DatabaseConfig::default()
        },
        TestDb::Postgres(url) => DatabaseConfig {
            url: Some(url.clone()),
            ..DatabaseConfig::default()
        },
    };
    Store::open_default(&config).unwrap();
    let conn = match &db {
        TestDb::Sqlite(path) => Conn::Sqlite(common::sqlite::open_sql(path)),
        TestDb::Postgres(url) => Conn::Postgres(
            postgres::Client::connect(url, postgres::NoTls)
                .unwrap_or_else(|e| panic!("{url}: {e}")),
        ),
    };
    let mut db = Db {
        conn,
        db,
        _dir: dir,
    };
    db.ok(&format!(
        r#"
        INSERT INTO "user" (id, email, name, created_at, updated_at)
            VALUES ('{USER}', 'u@example.com', 'u', '{T}', '{T}');
        INSERT INTO workspace (id, name, slug, description, created_at, updated_at)
            VALUES ('{WS}', 'W', 'w', '', '{T}', '{T}');
        INSERT INTO member (id, workspace_id, user_id, role, created_at)
            VALUES ('ffffffff-ffff-4fff-8fff-ffffffffffff', '{WS}', '{USER}', 'owner', '{T}');
        INSERT INTO agent_runtime (id, workspace_id, daemon_id, name, runtime_mode, provider, status,
            owner_id, created_at, updated_at)
            VALUES ('{RT}', '{WS}', 'mbp', 'Claude', 'local', 'claude', 'online', '{USER}', '{T}', '{T}');
        INSERT INTO agent (id, workspace_id, runtime_id, name, runtime_mode, owner_id, created_at, updated_at)
            VALUES ('{AGENT}', '{WS}', '{RT}', 'helper', 'local', '{USER}', '{T}', '{T}');
        INSERT INTO agent_task_queue (id, workspace_id, agent_id, runtime_id, status, prompt, created_at)
            VALUES ('{TASK}', '{WS}', '{AGENT}', '{RT}', 'completed', 'fix it', '{T}');
        INSERT INTO task_usage (id, task_id, provider, model, input_tokens, output_tokens, created_at, updated_at)
            VALUES ('12121212-1212-4121-8121-121212121212', '{TASK}', 'claude', 'opus', 100, 50, '{T}', '{T}');
        "#
    ));
    db
}

#[test]
fn runtime_is_unique_per_workspace_daemon_and_provider() {
    let mut db = seeded();
    let again = |provider: &str| {
        format!(
            "INSERT INTO agent_runtime (id, workspace_id, daemon_id, name, runtime_mode, provider,
                 status, created_at, updated_at)
             VALUES ('99999999-9999-4999-8999-999999999999', '{WS}', 'mbp', 'x', 'local',
                 '{provider}', 'online', '{T}', '{T}')"
        )
    };
    assert!(db.refused(&again("claude")));
    // another provider on the same machine is a different runtime
    db.ok(&again("codex"));
}

#[test]
fn runtime_with_agents_cannot_be_deleted() {
    let mut db = seeded();
    // archived or not, the agent row pins its runtime
    db.ok(&format!("UPDATE agent SET archived_at = '{T}'"));
    let delete_runtime = format!("DELETE FROM agent_runtime WHERE id = '{RT}'");
    assert!(db.refused(&delete_runtime));
    db.ok(&format!("DELETE FROM agent WHERE id = '{AGENT}'"));
    db.ok(&delete_runtime);
}

#[test]
fn task_history_and_usage_outlive_agent_and_runtime() {
    let mut db = seeded();
    db.ok(&format!("DELETE FROM agent WHERE id = '{AGENT}'"));
    db.ok(&format!("DELETE FROM agent_runtime WHERE id = '{RT}'"));
    assert_eq!(
        db.select(&format!(
            "SELECT agent_id, runtime_id, status FROM agent_task_queue WHERE id = '{TASK}'"
        )),
        [[Value::Null, Value::Null, json!("completed")]]
    );
    // (a bigint sum is numeric on PostgreSQL)
    assert_eq!(
        db.count("SELECT CAST(sum(input_tokens + output_tokens) AS BIGINT) FROM task_usage"),
        150
    );
}

#[test]
fn checks_refuse_out_of_range_values() {
    let mut db = seeded();
    let mut refused = vec![
        "UPDATE member SET role = 'boss'".to_string(),
        "UPDATE agent_runtime SET status = 'sleeping'".to_string(),
        "UPDATE agent_runtime SET runtime_mode = 'remote'".to_string(),
        "UPDATE agent_runtime SET metadata = '[1,2]'".to_string(),
        "UPDATE agent SET max_concurrent_tasks = 0".to_string(),
        "UPDATE agent SET max_concurrent_tasks = 101".to_string(),
        "UPDATE agent SET visibility = 'public'".to_string(),
        "UPDATE agent SET status = 'asleep'".to_string(),
        "UPDATE agent_task_queue SET status = 'lost'".to_string(),
        "UPDATE task_usage SET output_tokens = -1".to_string(),
        "UPDATE agent SET runtime_id = '00000000-0000-4000-8000-000000000000'".to_string(),
    ];
    if !common::on_postgres() {
        // a day is text in SQLite, checked for its one spelling; PostgreSQL
        // keeps it as a `date`, which has no spelling to get wrong
        refused.push(format!(
            "INSERT INTO runtime_usage (id, runtime_id, date, provider, model, created_at, updated_at)
             VALUES ('34343434-3434-4343-8343-343434343434', '{RT}', '2026-1-1', 'claude', 'opus', '{T}', '{T}')"
        ));
    }
    for sql in refused {
        assert!(db.refused(&sql), "{sql}: accepted");
    }
}

#[test]
fn usage_rows_are_unique_per_key() {
    let mut db = seeded();
    assert!(db.refused(&format!(
        "INSERT INTO task_usage (id, task_id, provider, model, created_at, updated_at)
         VALUES ('56565656-5656-4565-8565-565656565656', '{TASK}', 'claude', 'opus', '{T}', '{T}')"
    )));
    let insert = |id: &str| {
        format!(
            "INSERT INTO runtime_usage (id, runtime_id, date, provider, model, created_at, updated_at)
             VALUES ('{id}', '{RT}', '2026-01-01', 'claude', 'opus', '{T}', '{T}')"
        )
    };
    db.ok(&insert("78787878-7878-4787-8787-787878787878"));
    assert!(db.refused(&insert("89898989-8989-4898-8898-898989898989")));
}

#[test]
fn members_go_with_their_workspace_and_user() {
    let mut db = seeded();
    db.ok(&format!(r#"DELETE FROM "user" WHERE id = '{USER}'"#));
    assert_eq!(db.count("SELECT count(*) FROM member"), 0);
    // the runtime stays, ownerless
    assert_eq!(
        db.select("SELECT owner_id FROM agent_runtime"),
        [[Value::Null]]
    );
}

#[test]
fn one_pending_invitation_per_address_and_they_go_with_their_workspace() {
    let mut db = seeded();
    let invite = |id: &str, email: &str, status: &str| {
        let answered_at = if status == "pending" {
            "NULL".to_string()
        } else {
            format!("'{T}'")
        };
        format!(
            "INSERT INTO invitation (id, workspace_id, email, role, status, invited_by,
                 created_at, expires_at, answered_at)
             VALUES ('{id}', '{WS}', '{email}', 'member', '{status}', '{USER}', '{T}',
                 '2026-01-15T00:00:00.000Z', {answered_at})"
        )
    };
    db.ok(&invite(
        "13131313-1313-4131-8131-131313131313",
        "c@example.com",
        "pending",
    ));
    // the address is compared case-insensitively
    assert!(db.refused(&invite(
        "24242424-2424-4242-8242-242424242424",
        "C@Example.com",
        "pending",
    )));
    // answered ones do not block a new invitation
    db.ok(&invite(
        "35353535-3535-4353-8353-353535353535",
        "c@example.com",
        "declined",
    ));
    for sql in [
        "UPDATE invitation SET role = 'boss'",
        "UPDATE invitation SET status = 'lost'",
        "UPDATE invitation SET expires_at = created_at",
        // answered_at is set exactly when the invitation was answered
        "UPDATE invitation SET answered_at = NULL WHERE status = 'declined'",
        "UPDATE invitation SET status = 'accepted' WHERE status = 'pending'",
    ] {
        assert!(db.refused(sql), "{sql}: accepted");
    }
    db.ok(&format!("DELETE FROM workspace WHERE id = '{WS}'"));
    assert_eq!(db.count("SELECT count(*) FROM invitation"), 0);
}

#[test]
fn a_workspace_counts_its_runtimes() {
    let mut db = seeded();
    let count = |db: &Db| db.count("SELECT runtime_count FROM workspace");
    assert_eq!(count(&db), 1);
    db.ok(&format!(
        "INSERT INTO agent_runtime (id, workspace_id, daemon_id, name, runtime_mode, provider,
             status, owner_id, created_at, updated_at)
         VALUES ('99999999-9999-4999-8999-999999999999', '{WS}', 'mbp', 'Codex', 'local',
             'codex', 'online', '{USER}', '{T}', '{T}');"
    ));
    assert_eq!(count(&db), 2);
    db.ok("DELETE FROM agent_runtime WHERE id = '99999999-9999-4999-8999-999999999999'");
    assert_eq!(count(&db), 1);
}
