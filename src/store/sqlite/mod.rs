//! The SQLite engine: one file, a pool of read-only connections and one
//! writer thread, and the SQL of each table (`sqlite::<table>`).
//!
//! Pragmas on every connection:
//! * `journal_mode=WAL`: readers never block the writer and vice versa.
//! * `foreign_keys=ON`: the RESTRICT / CASCADE / SET NULL rules of the schema
//!   are enforced by SQLite itself.
//! * `synchronous=FULL`: every commit fsyncs the WAL before it returns. A 200
//!   from agenthub means the write is on disk, including across a power cut
//!   or a kernel panic on the laptop that hosts it; `NORMAL` would only
//!   survive a process crash. The cost is one fsync per write transaction.
//! * `busy_timeout`: how long to wait for a lock held by another process
//!   (`agenthub backup`, a `sqlite3` shell).
//! * `max_page_count` (the writer, when `database.max_size_mb` is set): a quota on the file's size; writes beyond it fail with
//!   SQLITE_FULL exactly like a full disk.
//!
//! Every write goes through one writer thread that owns the only writing
//! connection and commits the writes waiting together (`writer`: one
//! transaction, a savepoint per request, one fsync), so writers never spin
//! in SQLite's busy handler and the cost of a commit is shared. Reads use a
//! pool of `query_only` connections that writes never hold, and the WAL is
//! copied back into the file beside the writer (`checkpointer`).
//!
//! A statement cache of [`STATEMENT_CACHE`] per connection keeps every
//! statement of the store prepared once.

pub(super) mod agents;
pub(super) mod budgets;
mod checkpointer;
pub(super) mod copy;
mod errors;
pub(super) mod invitations;
pub(super) mod pricing;
pub(super) mod probes;
pub(super) mod runtimes;
pub(super) mod seed;
pub(super) mod sweeps;
pub(super) mod tasks;
pub(super) mod tokens;
pub(super) mod transcripts;
mod types;
pub(super) mod usage;
pub(super) mod users;
pub(super) mod webhooks;
pub(super) mod workspaces;
mod writer;

use std::path::Path;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OptionalExtension};

use crate::config::DatabaseConfig;
use crate::store::{Conn, Failure, Result};

pub(super) use types::stored_time;
pub(super) use writer::Observer;

use errors::pool_error;

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

type Pool = r2d2::Pool<SqliteConnectionManager>;

/// Prepared statements kept per connection: more than the store has (the
/// default of 16 made the busiest paths parse their statements again).
const STATEMENT_CACHE: usize = 256;

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create database file {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open database {path}: {detail}")]
    Open { path: String, detail: String },
    /// What SQLite said when a backup failed.
    #[error("{0}")]
    Backup(String),
    #[error("cannot open connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] refinery::Error),
    #[error("cannot start the database writer: {0}")]
    Writer(String),
    /// What opening or migrating a PostgreSQL database met.
    #[error("{0}")]
    Postgres(String),
    /// Rebuilding a workspace's usage days in its time zone failed.
    #[error("cannot rebuild usage days in a workspace's time zone: {0}")]
    ZoneDays(String),
}

/// The open file: its read pool and its writer.
pub(super) struct Engine {
    /// Connections that only read (`query_only`): a burst of writes never
    /// holds them.
    pool: Pool,
    writer: writer::Writer,
    _checkpointer: checkpointer::Checkpointer,
}

impl Engine {
    pub(super) fn open(
        config: &DatabaseConfig,
        observer: impl Observer,
    ) -> Result<Engine, OpenError> {
        let busy_timeout = busy_timeout(config);
        let mut conn = open_connection(&config.path, busy_timeout)?;
        let applied = migrate(&mut conn)?;
        if applied > 0 {
            log::info!(
                "applied {applied} migration(s) to {}",
                config.path.display()
            );
        }
        let max_size_mb = config.max_size_mb;
        if max_size_mb > 0 {
            log::info!("database size limited to {max_size_mb} MiB");
        }
        let open_err = |e: rusqlite::Error| OpenError::Open {
            path: config.path.display().to_string(),
            detail: e.to_string(),
        };
        limit_size(&conn, max_size_mb).map_err(open_err)?;
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            checkpointer::WRITER_AUTOCHECKPOINT,
        )
        .map_err(open_err)?;
        let checkpointer = checkpointer::Checkpointer::spawn(&config.path, busy_timeout)
            .map_err(OpenError::Writer)?;
        // the migration connection becomes the one writer
        let writer =
            writer::Writer::spawn(conn, observer).map_err(|e| OpenError::Writer(e.to_string()))?;
        let manager = SqliteConnectionManager::file(&config.path).with_init(move |c| {
            configure(c, busy_timeout)?;
            c.pragma_update(None, "query_only", true)
        });
        let pool = r2d2::Pool::builder()
            .max_size(config.pool_size)
            .connection_timeout(Duration::from_secs(30))
            .build(manager)?;
        Ok(Engine {
            pool,
            writer,
            _checkpointer: checkpointer,
        })
    }

    /// Runs `f` on a pooled read connection; `waited` is called once one
    /// is in hand.
    pub(super) fn read<T, E, F>(&self, f: F, waited: impl FnOnce()) -> Result<T, E>
    where
        E: Failure,
        F: FnOnce(&Conn<'_>) -> Result<T, E>,
    {
        let conn = self.pool.get().map_err(|e| E::from(pool_error(e)))?;
        waited();
        f(&Conn::sqlite(&conn))
    }

    pub(super) fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: Failure,
        F: FnOnce(&Conn<'_>) -> Result<T, E> + Send + 'static,
    {
        self.writer.write(f)
    }

    pub(super) fn submit<T, E, F>(
        &self,
        f: F,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<T, E>>, E>
    where
        T: Send + 'static,
        E: Failure,
        F: FnOnce(&Conn<'_>) -> Result<T, E> + Send + 'static,
    {
        self.writer.submit(f)
    }

    pub(super) fn set_writer_read_only(&self, read_only: bool) -> Result<()> {
        self.writer
            .direct(move |c| Ok(c.pragma_update(None, "query_only", read_only)?))
    }

    /// Online backup with SQLite's backup API, in one step so the copy is a
    /// single consistent snapshot even while the server keeps writing (WAL
    /// readers do not block writers).
    pub(super) fn backup_to(&self, dest: &Path) -> Result<()> {
        let conn = self.pool.get().map_err(pool_error)?;
        Ok(backup(&conn, dest)?)
    }

    pub(super) fn checkpoint(&self) -> Result<()> {
        let conn = self.pool.get().map_err(pool_error)?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }
}

/// A tiny write that really reaches the file: rewriting a header field
/// with its own value dirties the first page.
pub(super) fn probe(conn: &Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    conn.pragma_update(None, "user_version", version)?;
    Ok(())
}

/// Applies pending migrations to the file `config` names (creating it if
/// needed); returns how many were applied.
pub(super) fn migrate_file(config: &DatabaseConfig) -> Result<usize, OpenError> {
    let mut conn = open_connection(&config.path, busy_timeout(config))?;
    migrate(&mut conn)
}

/// Copies the file `config` names (live or not) to `dest` as one snapshot.
pub(super) fn backup_file(config: &DatabaseConfig, dest: &Path) -> Result<(), OpenError> {
    let conn = open_connection(&config.path, busy_timeout(config))?;
    backup(&conn, dest).map_err(|e| OpenError::Backup(e.to_string()))
}

fn busy_timeout(config: &DatabaseConfig) -> Duration {
    Duration::from_millis(config.busy_timeout_ms)
}

/// A migrated database file in a temporary directory (kept while the
/// returned directory lives), for the engine's unit tests.
#[cfg(test)]
pub(super) fn scratch_database() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("scratch.db");
    let mut conn = scratch_connection(&path);
    migrate(&mut conn).expect("migrate");
    (dir, path)
}

/// A connection to `path` with the standard pragmas, for unit tests.
#[cfg(test)]
pub(super) fn scratch_connection(path: &Path) -> Connection {
    open_connection(path, Duration::from_secs(5)).expect("open")
}

/// Applies the per-connection pragmas described in the module docs.
fn configure(conn: &Connection, busy_timeout: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
    // every statement of the store fits, so none is parsed twice
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;",
    )
}

/// Caps the file at `max_size_mb` MiB (0: no cap) through its page count.
/// SQLite never sets the cap below the file's current size.
fn limit_size(conn: &Connection, max_size_mb: u64) -> rusqlite::Result<()> {
    if max_size_mb == 0 {
        return Ok(());
    }
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages = (max_size_mb.saturating_mul(1024 * 1024) / page_size.max(1) as u64)
        // SQLite's own ceiling for max_page_count
        .clamp(1, 4_294_967_294);
    conn.pragma_update_and_check(None, "max_page_count", pages as i64, |r| r.get::<_, i64>(0))?;
    Ok(())
}

/// Creates the file readable by its owner only (tokens' hashes and usage
/// live in it) if it does not exist yet; SQLite gives its -wal and -shm
/// files the same mode.
fn create_private_file(path: &Path) -> Result<(), OpenError> {
    if path.exists() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(OpenError::Create {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Opens one connection with the standard pragmas (for migrations, backup
/// and tests that inspect the file directly).
fn open_connection(path: &Path, busy_timeout: Duration) -> Result<Connection, OpenError> {
    create_private_file(path)?;
    let open_err = |e: rusqlite::Error| OpenError::Open {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    let conn = Connection::open(path).map_err(open_err)?;
    configure(&conn, busy_timeout).map_err(open_err)?;
    Ok(conn)
}

/// Applies pending migrations; returns how many were applied.
/// Applies the pending migrations with foreign keys off, as SQLite's
/// procedure for rebuilding a table asks (dropping the old table must not
/// cascade), then checks that every reference still holds and turns them
/// back on. A migration that broke one fails the open.
fn migrate(conn: &mut Connection) -> Result<usize, OpenError> {
    let path = conn.path().unwrap_or("(memory)").to_string();
    let open_err = |e: rusqlite::Error| OpenError::Open {
        path: path.clone(),
        detail: e.to_string(),
    };
    conn.pragma_update(None, "foreign_keys", false)
        .map_err(open_err)?;
    let report = embedded::migrations::runner().run(conn);
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(open_err)?;
    let report = report?;
    let broken: Option<String> = conn
        .query_row("PRAGMA foreign_key_check", [], |row| row.get(0))
        .optional()
        .map_err(open_err)?;
    if let Some(table) = broken {
        return Err(OpenError::Open {
            path,
            detail: format!("a migration left a broken reference in table {table}"),
        });
    }
    Ok(report.applied_migrations().len())
}

/// Online backup of `src` into a new file at `dest`.
fn backup(src: &Connection, dest: &Path) -> rusqlite::Result<()> {
    let mut out = Connection::open(dest)?;
    {
        use rusqlite::backup::{Backup, StepResult};
        let backup = Backup::new(src, &mut out)?;
        // -1: copy every page in one step, inside one read transaction, so
        // writes that land meanwhile cannot force a restart.
        let mut waits = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => continue,
                // another process holds a lock: wait a little, then give up
                _ if waits < 200 => {
                    waits += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    return Err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some("database stayed locked for 10 s".into()),
                    ))
                }
            }
        }
    }
    // the copy is a standalone file: no WAL beside it
    out.execute_batch("PRAGMA journal_mode = DELETE;")?;
    Ok(())
}

#[cfg(test)]
mod migration_tests {
    use super::*;

    const T: &str = "2026-12-01T00:00:00.000Z";

    fn id(n: u32) -> String {
        format!("00000000-0000-7000-8000-{n:012}")
    }

    /// V24 rebuilds `agent` to let `runtime_id` be NULL: on a file that
    /// has data, every agent keeps its row, rowid and references, and the
    /// references are enforced again afterwards.
    #[test]
    fn the_agent_rebuild_keeps_rows_rowids_and_references() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("old.db");
        let mut conn = scratch_connection(&path);
        embedded::migrations::runner()
            .set_target(refinery::Target::Version(23))
            .run(&mut conn)
            .expect("migrate to V23");
        let (user, ws, rt) = (id(1), id(2), id(3));
        conn.execute_batch(&format!(
            r#"INSERT INTO "user" (id, email, name, created_at, updated_at)
                 VALUES ('{user}', 'a@example.com', 'A', '{T}', '{T}');
               INSERT INTO workspace (id, name, slug, created_at, updated_at)
                 VALUES ('{ws}', 'W', 'w', '{T}', '{T}');
               INSERT INTO agent_runtime (id, workspace_id, daemon_id, name, runtime_mode,
                   provider, status, owner_id, created_at, updated_at)
                 VALUES ('{rt}', '{ws}', 'mbp', 'claude', 'local', 'claude', 'online',
                   '{user}', '{T}', '{T}');
               INSERT INTO agent (rowid, id, workspace_id, runtime_id, name, runtime_mode,
                   owner_id, created_at, updated_at, max_attempts)
                 VALUES (7, '{a}', '{ws}', '{rt}', 'seven', 'local', '{user}', '{T}', '{T}', 3),
                        (3, '{b}', '{ws}', '{rt}', 'three', 'local', '{user}', '{T}', '{T}', 2);
               INSERT INTO agent_task_queue (id, workspace_id, agent_id, runtime_id, prompt,
                   status, created_at)
                 VALUES ('{task}', '{ws}', '{a}', '{rt}', 'p', 'queued', '{T}');"#,
            a = id(10),
            b = id(11),
            task = id(20),
        ))
        .expect("seed V23");

        assert!(
            migrate(&mut conn).expect("migrate") >= 1,
            "V24 and later applied"
        );

        let rows: Vec<(i64, String, Option<String>, i64)> = conn
            .prepare("SELECT rowid, id, runtime_id, max_attempts FROM agent ORDER BY rowid")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect()
            })
            .expect("agents");
        assert_eq!(
            rows,
            [
                (3, id(11), Some(rt.clone()), 2),
                (7, id(10), Some(rt.clone()), 3)
            ]
        );
        let task_agent: String = conn
            .query_row("SELECT agent_id FROM agent_task_queue", [], |r| r.get(0))
            .expect("task");
        assert_eq!(task_agent, id(10), "the task still names its agent");
        // NULL is allowed now, and references are enforced again
        conn.execute("UPDATE agent SET runtime_id = NULL WHERE id = ?1", [id(11)])
            .expect("unbind");
        let bogus = conn.execute(
            "UPDATE agent SET runtime_id = ?1 WHERE id = ?2",
            [id(99), id(11)],
        );
        assert!(bogus.is_err(), "a runtime that does not exist is refused");
        let gone = conn.execute("DELETE FROM agent_runtime WHERE id = ?1", [&rt]);
        assert!(
            gone.is_err(),
            "a runtime with an agent bound stays (RESTRICT)"
        );
        conn.execute("DELETE FROM agent WHERE id = ?1", [id(10)])
            .expect("delete an agent");
        let task_agent: Option<String> = conn
            .query_row("SELECT agent_id FROM agent_task_queue", [], |r| r.get(0))
            .expect("task");
        assert_eq!(task_agent, None, "ON DELETE SET NULL still holds");
    }
}
