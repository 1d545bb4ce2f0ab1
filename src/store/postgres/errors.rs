//! PostgreSQL's failures as the store's [`Error`]: uniqueness and reference
//! conflicts, lock waits and deadlocks, full or unreachable storage, and
//! everything else.

use postgres::error::SqlState;

use crate::store::Error;

pub(super) fn pool_error(e: r2d2::Error) -> Error {
    log::error!("database connection pool: {e}");
    Error::Unavailable("the database cannot be reached, retry later")
}

impl From<postgres::Error> for Error {
    fn from(err: postgres::Error) -> Error {
        let Some(code) = err.code() else {
            // no SQLSTATE: the connection failed, or the driver refused a
            // value or a row (the server's own bug, not the storage's)
            let io = std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>());
            if err.is_closed() || io {
                log::error!("database connection: {err}");
                return Error::Unavailable("the database cannot be reached, retry later");
            }
            return Error::internal(format!("database: {err}"));
        };
        if *code == SqlState::UNIQUE_VIOLATION || *code == SqlState::FOREIGN_KEY_VIOLATION {
            log::warn!("constraint refused a write: {err}");
            return Error::conflict(
                "the change conflicts with the current data (another request changed it first)",
            );
        }
        if *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::LOCK_NOT_AVAILABLE
            || *code == SqlState::QUERY_CANCELED
        {
            log::warn!("database busy: {err}");
            return Error::Busy;
        }
        if *code == SqlState::DISK_FULL || *code == SqlState::OUT_OF_MEMORY {
            log::error!("database storage: {err}");
            return Error::Full;
        }
        if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            // a standby, or a server made read-only (default_transaction_read_only)
            log::error!("database storage: {err}");
            return Error::Unavailable("the database is read-only, retry later");
        }
        if *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::IO_ERROR
            || *code == SqlState::CONNECTION_FAILURE
        {
            log::error!("database storage: {err}");
            return Error::Unavailable("the database cannot be written, retry later");
        }
        Error::internal(format!("database: {err}"))
    }
}
