//! What only SQLite has for a test: checks of the file itself (integrity,
//! journal mode, tables), and the SQLite half of the injected faults
//! (`faults`). Tests that use these checks say so by calling `sqlite::…`.

use std::path::Path;
use std::time::Duration;

/// A connection of its own to the SQLite file at `path`.
pub fn open_sql(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open db");
    conn.busy_timeout(Duration::from_secs(10)).expect("busy");
    conn.execute_batch("PRAGMA foreign_keys = ON;").expect("fk");
    conn
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
