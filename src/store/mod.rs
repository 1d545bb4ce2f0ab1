//! The store: every read and write of agenthub's data, behind one API of
//! domain operations (`store::<table>` modules) that take a [`Conn`] and
//! return [`Error`]. Nothing outside this module sees SQL, a driver type or
//! an engine's error. Each engine lives in a module of its own — SQLite in
//! `sqlite`, PostgreSQL (chosen by `database.url`) in `postgres` — with one
//! file per table, reached through one arm each in `dispatch!`. Rules that
//! are the same on every engine (token renewal, the steps of a usage
//! write, a workspace's slug) are decided here, once.
//!
//! Handlers touch the store through [`Store::read`] and [`Store::write`]
//! and never on the async executor: reads run on actix's blocking thread
//! pool, writes on the SQLite engine's writer (the request awaits its
//! answer without holding a thread) or, on PostgreSQL, in a transaction of
//! their own on the blocking pool. Inside a write, [`Conn`] knows it is
//! one, and reads that a write decides on lock their rows on an engine
//! with row locks. A closure given to `write` is one unit of
//! work: what it reads and what it writes, including the access checks
//! that decide whether it may, happen inside one transaction, and it is
//! answered only once that transaction is durable.
//!
//! A write that fails because the storage is full, read-only or failing
//! marks the store unhealthy (`/health` answers 503) until a write changes
//! rows again.
//!
//! The SQLite engine's pragmas, its one writer thread with group commit and
//! its background checkpoints are described in `sqlite`; the PostgreSQL
//! engine's transactions, locks and pool in `postgres`.

pub mod agents;
pub mod budgets;
pub mod copy;
mod error;
pub mod invitations;
mod postgres;
pub mod pricing;
pub mod probes;
pub mod runtimes;
#[doc(hidden)]
pub mod seed;
mod sqlite;
pub mod sweeps;
pub mod tasks;
pub mod tokens;
pub mod transcripts;
pub mod usage;
pub mod users;
pub mod webhooks;
pub mod workspaces;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;

use crate::config::DatabaseConfig;

pub use error::{Error, Failure, Result};
pub use sqlite::OpenError;

/// A connection inside a store operation: a read connection in
/// [`Store::read`], the writer's open transaction in [`Store::write`].
/// Only the store's modules see what is inside.
pub struct Conn<'a> {
    engine: Engine<'a>,
    /// Whether this is a write's transaction (rows a write decides on are
    /// locked where the engine has row locks).
    writing: bool,
}

enum Engine<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a postgres::Cell),
}

impl<'a> Conn<'a> {
    fn sqlite(conn: &'a rusqlite::Connection) -> Conn<'a> {
        Conn {
            engine: Engine::Sqlite(conn),
            writing: false,
        }
    }

    /// The SQLite connection, for the writer's unit tests.
    #[cfg(test)]
    fn sql(&self) -> &'a rusqlite::Connection {
        match self.engine {
            Engine::Sqlite(conn) => conn,
            Engine::Postgres(_) => panic!("a SQLite test ran on PostgreSQL"),
        }
    }

    fn postgres(conn: &'a postgres::Cell, writing: bool) -> Conn<'a> {
        Conn {
            engine: Engine::Postgres(conn),
            writing,
        }
    }

    /// Whether this connection is inside a write's transaction.
    fn writing(&self) -> bool {
        self.writing
    }
}

/// Runs `module::function(args)` of the engine behind `conn`.
macro_rules! dispatch {
    ($conn:expr, $module:ident :: $function:ident ( $($arg:expr),* )) => {
        match &$conn.engine {
            $crate::store::Engine::Sqlite(c) => {
                Ok($crate::store::sqlite::$module::$function(c, $($arg),*)?)
            }
            $crate::store::Engine::Postgres(c) => {
                Ok($crate::store::postgres::$module::$function(&mut c.borrow_mut(), $($arg),*)?)
            }
        }
    };
}
pub(crate) use dispatch;

/// The engine a [`Store`] runs on.
enum Backend {
    Sqlite(sqlite::Engine),
    Postgres(postgres::Engine),
}

/// Handle to the database, cheap to clone.
#[derive(Clone)]
pub struct Store {
    engine: Arc<Backend>,
    pool_wait: Histogram,
    storage: StorageState,
}

/// Why writes are failing, while they are; shared by every clone of a
/// [`Store`].
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

impl sqlite::Observer for StorageState {
    fn committed(&self, changed: bool) {
        // a commit that changed nothing wrote nothing, so proves nothing
        if changed {
            self.clear();
        }
    }

    fn failed(&self, error: &Error) {
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

    fn set(&self, err: &Error) {
        let fault = StorageFault {
            message: err.to_string(),
            full: matches!(err, Error::Full),
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

impl Store {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(config: &DatabaseConfig, pool_wait: Histogram) -> Result<Store, OpenError> {
        let storage = StorageState::default();
        let engine = match config.url.as_deref() {
            Some(url) => Backend::Postgres(
                postgres::Engine::open(config, url, storage.clone())
                    .map_err(|e| OpenError::Postgres(e.to_string()))?,
            ),
            None => Backend::Sqlite(sqlite::Engine::open(config, storage.clone())?),
        };
        let store = Store {
            engine: Arc::new(engine),
            pool_wait,
            storage,
        };
        // zone days a migration left in UTC for a workspace in another zone:
        // looked for with a read, rebuilt (a write) only when there are any
        let apart = store
            .read_blocking(usage::zones_apart)
            .map_err(|e| OpenError::ZoneDays(e.to_string()))?;
        if !apart.is_empty() {
            let aligned = store
                .write_blocking(usage::align_zone_days)
                .map_err(|e| OpenError::ZoneDays(e.to_string()))?;
            log::info!("rebuilt the local days of {aligned} workspace(s) in their time zone");
        }
        Ok(store)
    }

    /// [`Store::open`] with a histogram of its own (CLI, tests).
    pub fn open_default(config: &DatabaseConfig) -> Result<Store, OpenError> {
        Store::open(config, Histogram::new([0.001, 0.01, 0.1, 1.0]))
    }

    /// Runs `f` on a read connection, on the blocking pool.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: Failure + From<actix_web::error::BlockingError>,
        F: FnOnce(&Conn<'_>) -> Result<T, E> + Send + 'static,
    {
        let store = self.clone();
        actix_web::web::block(move || store.read_blocking(f)).await?
    }

    /// Runs `f` on the writer, inside a transaction shared with the other
    /// writes waiting at the same moment (each in its own savepoint: `f`'s
    /// error undoes `f` only). The write is durable when this returns `Ok`.
    ///
    /// The request waits for the writer without holding a thread: the
    /// writer is a thread of its own, so nothing here blocks.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: Failure,
        F: FnOnce(&Conn<'_>) -> Result<T, E> + Send + 'static,
    {
        let waiting = Instant::now();
        let result = match &*self.engine {
            Backend::Sqlite(engine) => {
                let answer = engine.submit(f)?;
                answer
                    .await
                    .map_err(|_| E::from(Error::internal("the database writer dropped a write")))
                    .and_then(|result| result)
            }
            // a transaction of its own on a pooled connection, off the
            // executor
            Backend::Postgres(_) => {
                let store = self.clone();
                actix_web::web::block(move || store.engine_write(f))
                    .await
                    .map_err(|e| E::from(Error::from(e)))
                    .and_then(|result| result)
            }
        };
        self.written(waiting, result)
    }

    /// [`Store::read`] for callers that are already off the executor (CLI).
    pub fn read_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send,
        E: Failure,
        F: FnOnce(&Conn<'_>) -> Result<T, E> + Send,
    {
        let waiting = Instant::now();
        let waited = || self.pool_wait.observe(waiting.elapsed().as_secs_f64());
        match &*self.engine {
            Backend::Sqlite(engine) => engine.read(f, waited),
            Backend::Postgres(engine) => engine.read(f, waited),
        }
    }

    /// [`Store::write`] for callers that are already off the executor (CLI,
    /// jobs). See `sqlite::writer` for the group commit.
    pub fn write_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: Failure,
        F: FnOnce(&Conn<'_>) -> Result<T, E> + Send + 'static,
    {
        let waiting = Instant::now();
        let result = self.engine_write(f);
        self.written(waiting, result)
    }

    /// Runs `f` as a write of the engine's, blocking.
    fn engine_write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: Failure,
        F: FnOnce(&Conn<'_>) -> Result<T, E> + Send + 'static,
    {
        match &*self.engine {
            Backend::Sqlite(engine) => engine.write(f),
            Backend::Postgres(engine) => engine.write(f),
        }
    }

    /// Both ends of the messages between the agenthub nodes that share this
    /// database (`None` on SQLite, whose file has one server): what one
    /// node sends, every node's receiver reads, its own included.
    pub fn broadcast(&self) -> Option<(NodeSender, NodeReceiver)> {
        match &*self.engine {
            Backend::Sqlite(_) => None,
            Backend::Postgres(engine) => {
                let (sender, receiver) = engine.broadcast();
                Some((NodeSender(sender), NodeReceiver(receiver)))
            }
        }
    }

    /// A lease on the background job `name` (the sweeper): see [`Lease`].
    pub fn lease(&self, name: &str) -> Lease {
        Lease(match &*self.engine {
            Backend::Sqlite(_) => None,
            Backend::Postgres(engine) => Some(engine.lease(name)),
        })
    }

    /// Which engine this store runs on: `"sqlite"` or `"postgres"`.
    pub fn engine_name(&self) -> &'static str {
        match &*self.engine {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Records how long a write waited (the writer itself reports the
    /// storage faults it meets).
    fn written<T, E>(&self, waiting: Instant, result: Result<T, E>) -> Result<T, E> {
        self.pool_wait.observe(waiting.elapsed().as_secs_f64());
        result
    }

    /// Makes the writer's connection read-only (`true`) or writable again,
    /// between transactions: how tests stand in for a disk that turned
    /// read-only.
    #[doc(hidden)]
    pub fn set_writer_read_only(&self, read_only: bool) -> Result<()> {
        match &*self.engine {
            Backend::Sqlite(engine) => engine.set_writer_read_only(read_only),
            Backend::Postgres(engine) => {
                engine.set_read_only(read_only);
                Ok(())
            }
        }
    }

    /// Why writes are failing (disk full, read-only, I/O error), if the
    /// last write that got that far failed for such a reason.
    pub fn storage_fault(&self) -> Option<String> {
        self.storage.get().map(|fault| fault.message)
    }

    /// [`Store::storage_fault`], after trying a tiny write when the fault is
    /// one a probe can see mended (a read-only or failing disk): a server
    /// that reports itself unhealthy may get no other writes to notice.
    pub async fn recheck_storage(&self) -> Option<String> {
        let fault = self.storage.get()?;
        if fault.full || !self.storage.may_probe() {
            return Some(fault.message);
        }
        let store = self.clone();
        let probe = move || store.write_blocking(probe);
        if let Ok(Ok(())) = actix_web::web::block(probe).await {
            self.storage.clear();
        }
        self.storage_fault()
    }

    /// Waits for a read connection (and the writer turn), in seconds.
    pub fn pool_wait(&self) -> &Histogram {
        &self.pool_wait
    }

    /// Copies the live database to `dest` as one consistent snapshot, even
    /// while the server keeps writing.
    pub fn backup_to(&self, dest: &Path) -> Result<()> {
        match &*self.engine {
            Backend::Sqlite(engine) => engine.backup_to(dest),
            Backend::Postgres(_) => Err(Error::internal(POSTGRES_BACKUP)),
        }
    }

    /// Folds the engine's log into the main file (used at shutdown); the
    /// PostgreSQL server manages its own log.
    pub fn checkpoint(&self) -> Result<()> {
        match &*self.engine {
            Backend::Sqlite(engine) => engine.checkpoint(),
            Backend::Postgres(_) => Ok(()),
        }
    }
}

/// The right to run a background job that must run on one node at a time.
/// On SQLite the one process that owns the file always holds it; on
/// PostgreSQL one node of those sharing the database does, and another
/// takes it over at its next try once that node is gone.
pub struct Lease(Option<postgres::Lease>);

impl Lease {
    /// Whether this process holds the lease now (taking it if it is free).
    /// Blocks: call it off the async executor.
    pub fn held(&mut self) -> bool {
        match &mut self.0 {
            None => true,
            Some(lease) => lease.held(),
        }
    }
}

/// Sends messages to the nodes on the database (see [`Store::broadcast`]).
/// Blocks: use it from a thread of its own.
pub struct NodeSender(postgres::broadcast::Sender);

impl NodeSender {
    /// Stores `bodies` as sent by `node` and wakes the receivers.
    pub fn send(&mut self, node: uuid::Uuid, bodies: &[String]) -> Result<()> {
        self.0.send(node, bodies)
    }
}

/// Reads the messages of every node on the database, in order. Blocks: use
/// it from a thread of its own.
pub struct NodeReceiver(postgres::broadcast::Receiver);

impl NodeReceiver {
    /// Waits up to `timeout` for news, then returns `(node, body)` of the
    /// messages stored since the last call (from the first call on).
    pub fn wait(&mut self, timeout: Duration) -> Result<Vec<(uuid::Uuid, String)>> {
        self.0.wait(timeout)
    }
}

/// Why `agenthub backup` does not copy a PostgreSQL database.
const POSTGRES_BACKUP: &str = "agenthub backup copies a SQLite file; back up a PostgreSQL \
     database with its own tools (pg_dump, or the server's base backups and WAL archive)";

/// A tiny write that really reaches the storage.
fn probe(conn: &Conn<'_>) -> Result<()> {
    match &conn.engine {
        Engine::Sqlite(c) => sqlite::probe(c),
        Engine::Postgres(c) => Ok(postgres::probe(&mut c.borrow_mut())?),
    }
}

/// Applies pending migrations to the database `config` names (creating it
/// if needed); returns how many were applied.
pub fn migrate(config: &DatabaseConfig) -> Result<usize, OpenError> {
    match config.url.as_deref() {
        Some(url) => {
            postgres::migrate_url(config, url).map_err(|e| OpenError::Postgres(e.to_string()))
        }
        None => sqlite::migrate_file(config),
    }
}

/// Copies the database `config` names, live or not, to a new file at
/// `dest` as one consistent snapshot.
pub fn backup(config: &DatabaseConfig, dest: &Path) -> Result<(), OpenError> {
    if config.url.is_some() {
        return Err(OpenError::Backup(POSTGRES_BACKUP.to_string()));
    }
    sqlite::backup_file(config, dest)
}
