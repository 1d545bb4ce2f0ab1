//! The constraints of SPEC §3 live in SQLite itself: these statements go
//! straight to the file, bypassing the API, and SQLite refuses them.

mod common;

use agenthub::config::DatabaseConfig;
use agenthub::store::Store;
use rusqlite::Connection;

const WS: &str = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
const USER: &str = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";
const RT: &str = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";
const AGENT: &str = "dddddddd-dddd-4ddd-8ddd-dddddddddddd";
const TASK: &str = "eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee";
const T: &str = "2026-01-01T00:00:00.000Z";

/// A migrated database holding one workspace, user, runtime, agent, task
/// and task usage row.
fn seeded() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.db");
    Store::open_default(&DatabaseConfig {
        path: path.clone(),
        ..DatabaseConfig::default()
    })
    .unwrap();
    let conn = common::sqlite::open_sql(&path);
    conn.execute_batch(&format!(
        r#"
        INSERT INTO "user" VALUES ('{USER}', 'u@example.com', 'u', '{T}', '{T}');
        INSERT INTO workspace (id, name, slug, description, created_at, updated_at) VALUES ('{WS}', 'W', 'w', '', '{T}', '{T}');
        INSERT INTO member VALUES ('ffffffff-ffff-4fff-8fff-ffffffffffff', '{WS}', '{USER}', 'owner', '{T}');
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
    ))
    .unwrap();
    (dir, conn)
}

fn is_constraint(err: rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::ConstraintViolation)
}

#[test]
fn runtime_is_unique_per_workspace_daemon_and_provider() {
    let (_dir, conn) = seeded();
    let again = |id: &str, provider: &str| {
        conn.execute(
            "INSERT INTO agent_runtime (id, workspace_id, daemon_id, name, runtime_mode, provider,
                 status, created_at, updated_at)
             VALUES (?1, ?2, 'mbp', 'x', 'local', ?3, 'online', ?4, ?4)",
            [id, WS, provider, T],
        )
    };
    let err = again("99999999-9999-4999-8999-999999999999", "claude").unwrap_err();
    assert!(is_constraint(err));
    // another provider on the same machine is a different runtime
    again("99999999-9999-4999-8999-999999999999", "codex").unwrap();
}

#[test]
fn runtime_with_agents_cannot_be_deleted() {
    let (_dir, conn) = seeded();
    // archived or not, the agent row pins its runtime
    conn.execute("UPDATE agent SET archived_at = ?1", [T])
        .unwrap();
    let err = conn
        .execute("DELETE FROM agent_runtime WHERE id = ?1", [RT])
        .unwrap_err();
    assert!(is_constraint(err));
    conn.execute("DELETE FROM agent WHERE id = ?1", [AGENT])
        .unwrap();
    conn.execute("DELETE FROM agent_runtime WHERE id = ?1", [RT])
        .unwrap();
}

#[test]
fn task_history_and_usage_outlive_agent_and_runtime() {
    let (_dir, conn) = seeded();
    conn.execute("DELETE FROM agent WHERE id = ?1", [AGENT])
        .unwrap();
    conn.execute("DELETE FROM agent_runtime WHERE id = ?1", [RT])
        .unwrap();
    let (agent, runtime, status): (Option<String>, Option<String>, String) = conn
        .query_row(
            "SELECT agent_id, runtime_id, status FROM agent_task_queue WHERE id = ?1",
            [TASK],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((agent, runtime, status.as_str()), (None, None, "completed"));
    let tokens: i64 = conn
        .query_row(
            "SELECT sum(input_tokens + output_tokens) FROM task_usage",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tokens, 150);
}

#[test]
fn checks_refuse_out_of_range_values() {
    let (_dir, conn) = seeded();
    let refused = [
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
        format!(
            "INSERT INTO runtime_usage (id, runtime_id, date, provider, model, created_at, updated_at)
             VALUES ('34343434-3434-4343-8343-343434343434', '{RT}', '2026-1-1', 'claude', 'opus', '{T}', '{T}')"
        ),
        "UPDATE agent SET runtime_id = '00000000-0000-4000-8000-000000000000'".to_string(),
    ];
    for sql in refused {
        let err = conn.execute(&sql, []).unwrap_err();
        assert!(is_constraint(err), "{sql}");
    }
}

#[test]
fn usage_rows_are_unique_per_key() {
    let (_dir, conn) = seeded();
    let err = conn
        .execute(
            "INSERT INTO task_usage (id, task_id, provider, model, created_at, updated_at)
             VALUES ('56565656-5656-4565-8565-565656565656', ?1, 'claude', 'opus', ?2, ?2)",
            [TASK, T],
        )
        .unwrap_err();
    assert!(is_constraint(err));
    let insert =
        "INSERT INTO runtime_usage (id, runtime_id, date, provider, model, created_at, updated_at)
                  VALUES (?1, ?2, '2026-01-01', 'claude', 'opus', ?3, ?3)";
    conn.execute(insert, ["78787878-7878-4787-8787-787878787878", RT, T])
        .unwrap();
    let err = conn
        .execute(insert, ["89898989-8989-4898-8898-898989898989", RT, T])
        .unwrap_err();
    assert!(is_constraint(err));
}

#[test]
fn members_go_with_their_workspace_and_user() {
    let (_dir, conn) = seeded();
    conn.execute(r#"DELETE FROM "user" WHERE id = ?1"#, [USER])
        .unwrap();
    let members: i64 = conn
        .query_row("SELECT count(*) FROM member", [], |r| r.get(0))
        .unwrap();
    assert_eq!(members, 0);
    // the runtime stays, ownerless
    let owner: Option<String> = conn
        .query_row("SELECT owner_id FROM agent_runtime", [], |r| r.get(0))
        .unwrap();
    assert_eq!(owner, None);
}

#[test]
fn one_pending_invitation_per_address_and_they_go_with_their_workspace() {
    let (_dir, conn) = seeded();
    let invite = |id: &str, email: &str, status: &str| {
        conn.execute(
            "INSERT INTO invitation (id, workspace_id, email, role, status, invited_by,
                 created_at, expires_at, answered_at)
             VALUES (?1, ?2, ?3, 'member', ?4, ?5, ?6, '2026-01-15T00:00:00.000Z',
                 CASE WHEN ?4 = 'pending' THEN NULL ELSE ?6 END)",
            [id, WS, email, status, USER, T],
        )
    };
    invite(
        "13131313-1313-4131-8131-131313131313",
        "c@example.com",
        "pending",
    )
    .unwrap();
    // the address is compared case-insensitively
    let err = invite(
        "24242424-2424-4242-8242-242424242424",
        "C@Example.com",
        "pending",
    )
    .unwrap_err();
    assert!(is_constraint(err));
    // answered ones do not block a new invitation
    invite(
        "35353535-3535-4353-8353-353535353535",
        "c@example.com",
        "declined",
    )
    .unwrap();
    for sql in [
        "UPDATE invitation SET role = 'boss'",
        "UPDATE invitation SET status = 'lost'",
        "UPDATE invitation SET expires_at = created_at",
        // answered_at is set exactly when the invitation was answered
        "UPDATE invitation SET answered_at = NULL WHERE status = 'declined'",
        "UPDATE invitation SET status = 'accepted' WHERE status = 'pending'",
    ] {
        let err = conn.execute(sql, []).unwrap_err();
        assert!(is_constraint(err), "{sql}");
    }
    conn.execute("DELETE FROM workspace WHERE id = ?1", [WS])
        .unwrap();
    let left: i64 = conn
        .query_row("SELECT count(*) FROM invitation", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn a_workspace_counts_its_runtimes() {
    let (_dir, conn) = seeded();
    let count = |conn: &Connection| -> i64 {
        conn.query_row("SELECT runtime_count FROM workspace", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count(&conn), 1);
    conn.execute_batch(&format!(
        "INSERT INTO agent_runtime (id, workspace_id, daemon_id, name, runtime_mode, provider,
             status, owner_id, created_at, updated_at)
         VALUES ('99999999-9999-4999-8999-999999999999', '{WS}', 'mbp', 'Codex', 'local',
             'codex', 'online', '{USER}', '{T}', '{T}');"
    ))
    .unwrap();
    assert_eq!(count(&conn), 2);
    conn.execute(
        "DELETE FROM agent_runtime WHERE id = '99999999-9999-4999-8999-999999999999'",
        [],
    )
    .unwrap();
    assert_eq!(count(&conn), 1);
}
