//! The store's one error type: what went wrong in terms a caller can act
//! on, whatever the engine. The HTTP edge maps it to a status once
//! (`crate::error`); jobs and the CLI report it as it is.

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The row the operation needs does not exist (any more).
    #[error("{0}")]
    NotFound(String),
    /// A uniqueness or reference rule refused the change.
    #[error("{0}")]
    Conflict(String),
    /// The database stayed locked past the busy timeout: retry shortly.
    #[error("database is busy, retry shortly")]
    Busy,
    /// The disk, or the `database.max_size_mb` quota, is full.
    #[error("the database disk is full")]
    Full,
    /// The storage cannot be written or opened (read-only, I/O error).
    #[error("{0}")]
    Unavailable(&'static str),
    /// Anything else; the detail is for the log, never for a client.
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::NotFound(message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Error {
        Error::Conflict(message.into())
    }

    pub fn internal(detail: impl std::fmt::Display) -> Error {
        Error::Internal(detail.to_string())
    }

    /// Whether the storage itself fails (full, read-only, I/O) rather than
    /// the operation.
    pub fn is_storage_fault(&self) -> bool {
        matches!(self, Error::Full | Error::Unavailable(_))
    }
}

/// What a closure run by [`super::Store::read`] or [`super::Store::write`]
/// may fail with: the store's own error, or a caller's error type that can
/// carry one (so the writer can tell a storage fault from a refusal).
pub trait Failure: From<Error> + Send + 'static {
    fn store_error(&self) -> Option<&Error>;
}

impl Failure for Error {
    fn store_error(&self) -> Option<&Error> {
        Some(self)
    }
}

impl From<actix_web::error::BlockingError> for Error {
    fn from(err: actix_web::error::BlockingError) -> Error {
        Error::internal(format!("blocking pool: {err}"))
    }
}
