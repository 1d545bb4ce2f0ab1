//! The PostgreSQL engine: a pool of connections to one database that any
//! number of agenthub nodes may share, and the SQL of each table
//! (`postgres::<table>`), mirroring the SQLite engine module for module.
//!
//! Every write is one transaction on a pooled connection (READ COMMITTED):
//! what it reads and what it writes commit together, and the rules the
//! SQLite engine gets from its single writer come from the statements
//! themselves — conditional updates, `INSERT … ON CONFLICT`, the schema's
//! constraints, and row locks (`FOR UPDATE`) on the parent row before a
//! rule that spans many rows. A commit is durable as the server is set up
//! to make it (`synchronous_commit`, replicas): agenthub answers after it.
//!
//! Connections are opened with `TimeZone=UTC` (days and hours of usage are
//! UTC days and hours, as on SQLite) and `lock_timeout` set to
//! `database.busy_timeout_ms`: a write that waits longer on a row lock
//! fails as busy (503) instead of hanging.

pub(super) mod agents;
pub(super) mod broadcast;
pub(super) mod budgets;
mod client;
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

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use r2d2_postgres::postgres::NoTls;

use crate::config::DatabaseConfig;
use crate::store::sqlite::Observer;
use crate::store::{Conn, Error, Failure, Result};

#[allow(unused_imports)]
pub(super) use types::stored;

use errors::pool_error;

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// A pooled connection, as the engine's modules receive it.
pub(in crate::store) use client::Client;
use client::Manager;
/// What a [`Conn`] holds on this engine.
pub(in crate::store) type Cell = RefCell<r2d2::PooledConnection<Manager>>;

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PgOpenError {
    #[error("invalid database url: {0}")]
    Url(String),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] refinery::Error),
}

/// The pool, and how writes report storage faults.
pub(super) struct Engine {
    /// Always `Some` until the engine is dropped (see its `Drop`).
    pool: Option<r2d2::Pool<Manager>>,
    /// How to open a connection of its own (a [`Lease`]'s).
    client_config: Box<postgres::Config>,
    observer: Box<dyn Observer + Sync>,
    /// Tests stand in for a database that refuses writes with this.
    read_only: AtomicBool,
}

/// The driver's settings for `url`, with the session settings every
/// connection of agenthub's uses.
fn client_config(config: &DatabaseConfig, url: &str) -> Result<postgres::Config, PgOpenError> {
    let mut pg: postgres::Config = url
        .parse()
        .map_err(|e: postgres::Error| PgOpenError::Url(e.to_string()))?;
    let options = format!(
        "-c TimeZone=UTC -c lock_timeout={}",
        config.busy_timeout_ms.max(1)
    );
    let options = match pg.get_options() {
        Some(theirs) => format!("{theirs} {options}"),
        None => options,
    };
    pg.options(&options);
    if pg.get_application_name().is_none() {
        pg.application_name("agenthub");
    }
    pg.connect_timeout(Duration::from_secs(10));
    Ok(pg)
}

/// A pool of `size` connections to `url`.
fn pool(config: &DatabaseConfig, url: &str, size: u32) -> Result<r2d2::Pool<Manager>, PgOpenError> {
    let manager = Manager::new(client_config(config, url)?);
    r2d2::Pool::builder()
        .max_size(size.max(1))
        // grown on demand: an idle node holds few of the server's
        // connections
        .min_idle(Some(1))
        // a round trip per checkout otherwise; a broken connection fails
        // its statement, is answered 503 and is dropped by the pool
        .test_on_check_out(false)
        .connection_timeout(Duration::from_secs(30))
        .build(manager)
        .map_err(|e| PgOpenError::Connect(e.to_string()))
}

/// Runs `f` where the synchronous driver may block. The driver drives its
/// connections with a runtime of its own, which cannot start on a thread
/// that is running async tasks (start-up inside the server's runtime, a
/// test): there `f` runs on a scoped thread of its own. Request handlers
/// reach the store through the blocking pool, where `f` runs in place.
fn off_executor<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if actix::Arbiter::try_current().is_none() {
        return f();
    }
    std::thread::scope(|scope| scope.spawn(f).join())
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

impl Engine {
    pub(super) fn open(
        config: &DatabaseConfig,
        url: &str,
        observer: impl Observer + Sync,
    ) -> Result<Engine, PgOpenError> {
        // reads and writes share the pool: PostgreSQL runs them side by
        // side, so a burst of writes takes at most the writes' share
        let client_config = Box::new(client_config(config, url)?);
        let (pool, applied) = off_executor(|| {
            let pool = pool(config, url, config.pool_size.saturating_mul(2))?;
            let applied = migrate_pool(&pool)?;
            Ok::<_, PgOpenError>((pool, applied))
        })?;
        if applied > 0 {
            log::info!("applied {applied} PostgreSQL migration(s)");
        }
        Ok(Engine {
            pool: Some(pool),
            client_config,
            observer: Box::new(observer),
            read_only: AtomicBool::new(false),
        })
    }

    /// Runs `f` on a pooled connection, each statement on its own (as the
    /// SQLite engine's reads); `waited` is called once one is in hand.
    pub(super) fn read<T, E, F>(&self, f: F, waited: impl FnOnce() + Send) -> Result<T, E>
    where
        T: Send,
        E: Failure,
        F: FnOnce(&Conn<'_>) -> Result<T, E> + Send,
    {
        off_executor(|| {
            let conn = self.connection().map_err(E::from)?;
            waited();
            let cell = RefCell::new(conn);
            f(&Conn::postgres(&cell, false))
        })
    }

    /// Runs `f` in a transaction of its own and commits it; blocks.
    pub(super) fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send,
        E: Failure,
        F: FnOnce(&Conn<'_>) -> Result<T, E> + Send,
    {
        let outcome = off_executor(|| self.transaction(f));
        match &outcome {
            Ok(_) => self.observer.committed(true),
            Err(e) => {
                if let Some(fault) = e.store_error().filter(|e| e.is_storage_fault()) {
                    self.observer.failed(fault);
                }
            }
        }
        outcome
    }

    fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        E: Failure,
        F: FnOnce(&Conn<'_>) -> Result<T, E>,
    {
        let conn = self.connection().map_err(E::from)?;
        let cell = RefCell::new(conn);
        let begin = if self.read_only.load(Ordering::Relaxed) {
            "BEGIN READ ONLY"
        } else {
            "BEGIN"
        };
        cell.borrow_mut()
            .batch_execute(begin)
            .map_err(|e| E::from(e.into()))?;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f(&Conn::postgres(&cell, true))
        }))
        .unwrap_or_else(|_| {
            Err(E::from(Error::internal(
                "a write panicked; it was rolled back",
            )))
        });
        let mut conn = cell.borrow_mut();
        match outcome {
            Ok(value) => {
                conn.batch_execute("COMMIT")
                    .map_err(|e| E::from(e.into()))?;
                Ok(value)
            }
            Err(error) => {
                if let Err(e) = conn.batch_execute("ROLLBACK") {
                    log::error!("could not roll back a failed write: {e}");
                }
                Err(error)
            }
        }
    }

    fn connection(&self) -> Result<r2d2::PooledConnection<Manager>> {
        let pool = self
            .pool
            .as_ref()
            .ok_or_else(|| Error::internal("the database pool is closed"))?;
        pool.get().map_err(pool_error)
    }

    /// Both ends of the messages between the nodes on this database.
    pub(super) fn broadcast(&self) -> (broadcast::Sender, broadcast::Receiver) {
        (
            broadcast::Sender::new((*self.client_config).clone()),
            broadcast::Receiver::new((*self.client_config).clone()),
        )
    }

    /// A lease on the job `name`, not yet tried.
    pub(super) fn lease(&self, name: &str) -> Lease {
        Lease {
            config: (*self.client_config).clone(),
            name: name.to_string(),
            session: None,
        }
    }

    pub(super) fn set_read_only(&self, read_only: bool) {
        self.read_only.store(read_only, Ordering::Relaxed);
    }
}

/// The right to run a background job (`name`) for the database the URL
/// reaches, held by one agenthub node at a time: a PostgreSQL advisory lock
/// held by a session of its own. It is released when that session ends —
/// the node stops, dies or loses its connection — and another node takes
/// it at its next try. The lock is keyed by the schema too, so installs in
/// different schemas of one database each have their own.
pub(super) struct Lease {
    config: postgres::Config,
    name: String,
    session: Option<postgres::Client>,
}

impl Lease {
    /// Whether this node holds the lease now, taking it if it is free.
    /// Blocks (a connection, a query).
    pub(super) fn held(&mut self) -> bool {
        off_executor(|| self.try_hold())
    }

    fn try_hold(&mut self) -> bool {
        if let Some(session) = &mut self.session {
            if session.is_valid(Duration::from_secs(5)).is_ok() {
                return true;
            }
            log::warn!("lost the database session holding the {} lease", self.name);
            self.session = None;
        }
        let mut session = match self.config.connect(NoTls) {
            Ok(session) => session,
            Err(e) => {
                log::warn!("cannot try the {} lease: {e}", self.name);
                return false;
            }
        };
        let taken = session
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext('agenthub'), hashtext(current_schema() || ':' || $1))",
                &[&self.name],
            )
            .and_then(|row| row.try_get::<_, bool>(0));
        match taken {
            Ok(true) => {
                log::info!("this node now runs the {}", self.name);
                self.session = Some(session);
                true
            }
            // another node holds it; this session closes here
            Ok(false) => false,
            Err(e) => {
                log::warn!("cannot try the {} lease: {e}", self.name);
                false
            }
        }
    }
}

impl Drop for Lease {
    /// Closing the session blocks on the driver's runtime (see `Engine`'s
    /// `Drop`).
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            off_executor(move || drop(session));
        }
    }
}

impl Drop for Engine {
    /// Closing a connection blocks on the driver's runtime: never on an
    /// async executor thread, where the last handle may go.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            off_executor(move || drop(pool));
        }
    }
}

/// A tiny write that really reaches the server: the newest migration's
/// row rewritten with its own values (a new row version and its log
/// record), refused like any write by a server that cannot write.
pub(super) fn probe(conn: &mut Client) -> std::result::Result<(), postgres::Error> {
    conn.batch_execute(
        "UPDATE refinery_schema_history SET version = version
         WHERE version = (SELECT max(version) FROM refinery_schema_history)",
    )
}

fn migrate_pool(pool: &r2d2::Pool<Manager>) -> Result<usize, PgOpenError> {
    let mut conn = pool
        .get()
        .map_err(|e| PgOpenError::Connect(e.to_string()))?;
    let report = embedded::migrations::runner().run(conn.driver())?;
    Ok(report.applied_migrations().len())
}

/// Applies pending migrations to the database at `url`; returns how many
/// were applied.
pub(super) fn migrate_url(config: &DatabaseConfig, url: &str) -> Result<usize, PgOpenError> {
    off_executor(|| migrate_pool(&pool(config, url, 1)?))
}
