//! The SQLite file: connection pool, migrations, and the two ways handlers
//! touch the database — [`Db::read`] and [`Db::write`] — both of which run
//! on actix's blocking thread pool, never on the async executor.
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
//! * `max_page_count` (pooled connections, when `database.max_size_mb` is
//!   set): a quota on the file's size; writes beyond it fail with
//!   SQLITE_FULL exactly like a full disk.
//!
//! A write that fails because the storage is full, read-only or failing
//! marks the database unhealthy (`/health` answers 503) until a write
//! changes rows again.
//!
//! Every write goes through one writer thread that owns the only writing
//! connection and commits the writes waiting together (`writer`: one
//! transaction, a savepoint per request, one fsync), so writers never spin
//! in SQLite's busy handler and the cost of a commit is shared. Reads use a
//! pool of `query_only` connections that writes never hold.

pub mod agents;
pub mod invitations;
pub mod runtimes;
pub mod sweeps;
pub mod tasks;
pub mod tokens;
pub mod usage;
pub mod users;
pub mod workspaces;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;

use crate::config::DatabaseConfig;
use crate::error::ApiError;

mod embedded {
    refinery::embed_migrations!("migrations");
}

pub type Pool = r2d2::Pool<SqliteConnectionManager>;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create database file {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("cannot open connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] refinery::Error),
    #[error("cannot start the database writer: {0}")]
    Writer(String),
}

/// Handle to the database, cheap to clone.
#[derive(Clone)]
pub struct Db {
    /// Connections that only read (`query_only`): a burst of writes never
    /// holds them.
    pool: Pool,
    writer: Arc<writer::Writer>,
    pool_wait: Histogram,
    storage: StorageState,
}

/// Why writes are failing, while they are; shared by every clone of a
/// [`Db`].
#[derive(Clone, Default)]
struct StorageState {
    fault: Arc<Mutex<Option<StorageFault>>>,
    /// When `/health` last tried a probe write: at most one a second, so
    /// unauthenticated health checks cannot keep the writer busy.
    last_probe: Arc<Mutex<Option<Instant>>>,
}

#[derive(Clone)]
struct StorageFault {
    message: String,
    /// Full storage is only cured by a write that fits, so no probe can
    /// tell; read-only or I/O faults can be probed with a tiny write.
    full: bool,
}

impl writer::Observer for StorageState {
    fn committed(&self, changed: bool) {
        // a commit that changed nothing wrote nothing, so proves nothing
        if changed {
            self.clear();
        }
    }

    fn failed(&self, error: &ApiError) {
        if error.is_storage_fault() {
            self.set(error);
        }
    }
}

impl StorageState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<StorageFault>> {
        // the guarded value is replaced whole, so a poisoned lock holds a
        // consistent one
        self.fault
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set(&self, err: &ApiError) {
        let fault = StorageFault {
            message: err.to_string(),
            full: matches!(err, ApiError::StorageFull),
        };
        if self.lock().replace(fault).is_none() {
            log::error!("database writes fail ({err}); /health answers 503 until one succeeds");
        }
    }

    fn clear(&self) {
        if self.lock().take().is_some() {
            log::info!("database writes succeed again");
        }
    }

    /// Whether a probe may run now (and, if so, records that it does).
    fn may_probe(&self) -> bool {
        let mut last = self
            .last_probe
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    fn get(&self) -> Option<StorageFault> {
        self.lock().clone()
    }
}

/// Applies the per-connection pragmas described in the module docs.
fn configure(conn: &Connection, busy_timeout: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
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
pub fn open_connection(path: &Path, busy_timeout: Duration) -> Result<Connection, OpenError> {
    create_private_file(path)?;
    let open_err = |source| OpenError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open(path).map_err(open_err)?;
    configure(&conn, busy_timeout).map_err(open_err)?;
    Ok(conn)
}

/// Applies pending migrations; returns how many were applied.
pub fn migrate(conn: &mut Connection) -> Result<usize, OpenError> {
    let report = embedded::migrations::runner().run(conn)?;
    Ok(report.applied_migrations().len())
}

impl Db {
    /// Opens (creating if needed) and migrates the database, then builds the
    /// pool.
    pub fn open(config: &DatabaseConfig) -> Result<Db, OpenError> {
        let busy_timeout = Duration::from_millis(config.busy_timeout_ms);
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
        // the migration connection becomes the one writer
        let open_err = |source| OpenError::Open {
            path: config.path.display().to_string(),
            source,
        };
        limit_size(&conn, max_size_mb).map_err(open_err)?;
        let storage = StorageState::default();
        let writer = writer::Writer::spawn(conn, storage.clone())
            .map_err(|e| OpenError::Writer(e.to_string()))?;
        let manager = SqliteConnectionManager::file(&config.path).with_init(move |c| {
            configure(c, busy_timeout)?;
            c.pragma_update(None, "query_only", true)
        });
        let pool = r2d2::Pool::builder()
            .max_size(config.pool_size)
            .connection_timeout(Duration::from_secs(30))
            .build(manager)?;
        Ok(Db {
            pool,
            writer: Arc::new(writer),
            pool_wait: crate::metrics::latency_histogram(),
            storage,
        })
    }

    /// Runs `f` on a pooled connection, on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let db = self.clone();
        actix_web::web::block(move || db.read_blocking(f)).await?
    }

    /// Runs `f` on the writer, inside a transaction shared with the other
    /// writes waiting at the same moment (each in its own savepoint: `f`'s
    /// error undoes `f` only). The write is durable when this returns `Ok`.
    pub async fn write<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let db = self.clone();
        actix_web::web::block(move || db.write_blocking(f)).await?
    }

    /// [`Db::read`] for callers that are already off the executor (CLI).
    pub fn read_blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Connection) -> Result<T, ApiError>,
    {
        let waiting = Instant::now();
        let conn = self.pool.get()?;
        self.pool_wait.observe(waiting.elapsed().as_secs_f64());
        f(&conn)
    }

    /// [`Db::write`] for callers that are already off the executor (CLI,
    /// jobs). See `writer` for the group commit.
    pub fn write_blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let waiting = Instant::now();
        let result = self.writer.write(f);
        self.pool_wait.observe(waiting.elapsed().as_secs_f64());
        if let Err(e) = &result {
            if e.is_storage_fault() {
                self.storage.set(e);
            }
        }
        result
    }

    /// Runs `f` on the writer's connection outside any transaction: for
    /// connection settings (tests use it to make the file read-only).
    #[doc(hidden)]
    pub fn on_writer<F>(&self, f: F) -> Result<(), ApiError>
    where
        F: FnOnce(&Connection) -> Result<(), ApiError> + Send + 'static,
    {
        self.writer.direct(f)
    }

    /// Why writes are failing (disk full, read-only, I/O error), if the
    /// last write that got that far failed for such a reason.
    pub fn storage_fault(&self) -> Option<String> {
        self.storage.get().map(|fault| fault.message)
    }

    /// [`Db::storage_fault`], after trying a tiny write when the fault is
    /// one a probe can see mended (a read-only or failing disk): a server
    /// that reports itself unhealthy may get no other writes to notice.
    pub async fn recheck_storage(&self) -> Option<String> {
        let fault = self.storage.get()?;
        if fault.full || !self.storage.may_probe() {
            return Some(fault.message);
        }
        let db = self.clone();
        if let Ok(Ok(())) = actix_web::web::block(move || db.probe_write()).await {
            self.storage.clear();
        }
        self.storage_fault()
    }

    fn probe_write(&self) -> Result<(), ApiError> {
        self.write_blocking(|tx| {
            // rewriting a header field with its own value dirties the first
            // page, so the commit really writes to the file
            let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            tx.pragma_update(None, "user_version", version)?;
            Ok(())
        })
    }

    /// Waits for a pooled connection (and the writer turn), in seconds.
    pub fn pool_wait(&self) -> &Histogram {
        &self.pool_wait
    }

    /// Copies the live database to `dest` with SQLite's online backup API,
    /// in one step so the copy is a single consistent snapshot even while
    /// the server keeps writing (WAL readers do not block writers).
    pub fn backup_to(&self, dest: &Path) -> Result<(), ApiError> {
        let conn = self.pool.get()?;
        backup(&conn, dest).map_err(ApiError::from)
    }

    /// Checkpoints the WAL into the main file (used at shutdown).
    pub fn checkpoint(&self) -> Result<(), ApiError> {
        let conn = self.pool.get()?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }
}

/// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed if it succeeds.
/// Online backup of `src` into a new file at `dest`.
pub fn backup(src: &Connection, dest: &Path) -> rusqlite::Result<()> {
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

/// Current time in the stored form: UTC, millisecond precision, fixed width.
pub fn now() -> String {
    format_time(chrono::Utc::now())
}

pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A stored timestamp as the API shows it: RFC 3339, UTC, whole seconds
/// (`2026-11-23T19:42:52Z`).
pub fn api_time(stored: &str) -> String {
    match stored.get(..19) {
        Some(seconds) => format!("{seconds}Z"),
        None => stored.to_string(),
    }
}
