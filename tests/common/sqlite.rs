//! What only SQLite can do for a test: faults injected with DDL on the
//! app's file, and checks of the file itself (integrity, journal mode,
//! tables). No store operation makes a database misbehave or inspects its
//! file, so these are written against SQLite directly; another engine
//! needs its own version of each (PostgreSQL: a trigger function that
//! raises, `ALTER TABLE … RENAME`, its catalog), and tests that use them
//! say so by calling `sqlite::…`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::TestApp;

/// A connection of its own to the SQLite file at `path`.
pub fn open_sql(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open db");
    conn.busy_timeout(Duration::from_secs(10)).expect("busy");
    conn.execute_batch("PRAGMA foreign_keys = ON;").expect("fk");
    conn
}

/// A way for the database to misbehave.
pub enum Fault<'a> {
    /// Inserts into `table` fail where `when` (a condition on `NEW`) holds.
    RefuseInsert { table: &'a str, when: &'a str },
    /// Updates of `column` in `table` fail where `when` holds.
    RefuseUpdate {
        table: &'a str,
        column: &'a str,
        when: &'a str,
    },
    /// `table` is gone (renamed to `<table>_gone`): whatever uses it fails.
    MissingTable(&'a str),
}

/// Prefix of the triggers [`fault`] makes, so [`clear_faults`] finds them.
const TRIGGER_PREFIX: &str = "injected_fault_";

/// Makes the app's database misbehave as `fault` says, until
/// [`clear_faults`] (a missing table stays missing).
pub fn fault(app: &TestApp, fault: Fault<'_>) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("{TRIGGER_PREFIX}{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let ddl = match fault {
        Fault::RefuseInsert { table, when } => format!(
            "CREATE TRIGGER {name} BEFORE INSERT ON {table}
             WHEN {when} BEGIN SELECT RAISE(ABORT, 'injected fault'); END;"
        ),
        Fault::RefuseUpdate {
            table,
            column,
            when,
        } => format!(
            "CREATE TRIGGER {name} BEFORE UPDATE OF {column} ON {table}
             WHEN {when} BEGIN SELECT RAISE(ABORT, 'injected fault'); END;"
        ),
        Fault::MissingTable(table) => format!("ALTER TABLE {table} RENAME TO {table}_gone;"),
    };
    open_sql(&app.db_path)
        .execute_batch(&ddl)
        .unwrap_or_else(|e| panic!("{ddl}: {e}"));
}

/// Drops every trigger [`fault`] made: writes succeed again.
pub fn clear_faults(app: &TestApp) {
    let conn = open_sql(&app.db_path);
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE ?1")
        .and_then(|mut stmt| {
            stmt.query_map([format!("{TRIGGER_PREFIX}%")], |r| r.get(0))?
                .collect()
        })
        .expect("list injected triggers");
    for name in names {
        conn.execute_batch(&format!("DROP TRIGGER {name};"))
            .expect("drop trigger");
    }
}

/// `PRAGMA integrity_check` of the file at `path`: `ok` when intact.
pub fn integrity_check(path: &Path) -> String {
    open_sql(path)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}

/// How many rows of the file at `path` point at a row that is not there.
pub fn foreign_key_violations(path: &Path) -> i64 {
    open_sql(path)
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .expect("foreign_key_check")
}

/// The journal mode of the file at `path` (`wal`).
pub fn journal_mode(path: &Path) -> String {
    open_sql(path)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode")
}

/// The tables of the file at `path` (the migrations' own left out), by name.
pub fn tables(path: &Path) -> Vec<String> {
    open_sql(path)
        .prepare(
            "SELECT name FROM sqlite_master
             WHERE type = 'table' AND name NOT LIKE 'refinery%' ORDER BY name",
        )
        .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect())
        .expect("tables")
}
