//! SQLite's failures as the store's [`Error`]: busy, full or failing
//! storage, uniqueness and reference conflicts, and everything else.

use rusqlite::{ffi, ErrorCode};

use crate::store::Error;

pub(super) fn pool_error(e: r2d2::Error) -> Error {
    Error::internal(format!("connection pool: {e}"))
}

/// The storage failures callers are told about, by SQLite primary code.
fn storage_error(code: ErrorCode) -> Option<Error> {
    match code {
        ErrorCode::DiskFull => Some(Error::Full),
        ErrorCode::ReadOnly => Some(Error::Unavailable("the database is read-only, retry later")),
        ErrorCode::SystemIoFailure => Some(Error::Unavailable(
            "the database storage failed (I/O error), retry later",
        )),
        ErrorCode::CannotOpen => Some(Error::Unavailable(
            "the database file cannot be opened, retry later",
        )),
        _ => None,
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Error {
        if let rusqlite::Error::SqliteFailure(e, _) = &err {
            match e.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => return Error::Busy,
                // a uniqueness or reference rule: the request collides
                // with another one; other constraint failures (CHECK, NOT
                // NULL, triggers) are the server's own bugs
                ErrorCode::ConstraintViolation
                    if matches!(
                        e.extended_code,
                        ffi::SQLITE_CONSTRAINT_UNIQUE
                            | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                            | ffi::SQLITE_CONSTRAINT_FOREIGNKEY
                    ) =>
                {
                    log::warn!("constraint refused a write: {err}");
                    return Error::conflict(
                        "the change conflicts with the current data (another request changed it first)",
                    );
                }
                code => {
                    if let Some(storage) = storage_error(code) {
                        log::error!("database storage: {err}");
                        return storage;
                    }
                }
            }
        }
        Error::internal(format!("database: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_error(code: std::os::raw::c_int) -> Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), None).into()
    }

    #[test]
    fn storage_faults_are_told_apart_from_other_failures() {
        for code in [ffi::SQLITE_READONLY, ffi::SQLITE_READONLY_DBMOVED] {
            let err = sqlite_error(code);
            assert!(err.is_storage_fault());
            assert_eq!(err.to_string(), "the database is read-only, retry later");
        }
        assert!(matches!(sqlite_error(ffi::SQLITE_FULL), Error::Full));
        assert!(sqlite_error(ffi::SQLITE_IOERR_WRITE).is_storage_fault());
        assert!(matches!(sqlite_error(ffi::SQLITE_BUSY), Error::Busy));
        assert!(matches!(
            sqlite_error(ffi::SQLITE_CONSTRAINT_UNIQUE),
            Error::Conflict(_)
        ));
        // a trigger or CHECK refusing a write is the server's own bug
        assert!(matches!(
            sqlite_error(ffi::SQLITE_CONSTRAINT_TRIGGER),
            Error::Internal(_)
        ));
        assert!(matches!(
            sqlite_error(ffi::SQLITE_CORRUPT),
            Error::Internal(_)
        ));
    }
}
