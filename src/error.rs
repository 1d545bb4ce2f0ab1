//! The one error type of the HTTP API: every failure becomes
//! `{"error": "<message>"}` with its status. Database and other internal
//! failures are logged with their detail and answered with a generic 5xx, so
//! nothing about the server's insides reaches a caller; storage that cannot
//! be written (disk full, read-only, I/O errors) gets a message of its own
//! so an operator knows what to fix.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use rusqlite::ErrorCode;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A per-caller limit was reached (open streams, pending pings).
    #[error("{0}")]
    TooManyRequests(String),
    /// The path exists but not with this method; `allow` lists the methods
    /// it has, for the `Allow` header.
    #[error("method not allowed")]
    MethodNotAllowed { allow: String },
    /// The client did not send the whole body within the server's body
    /// timeout.
    #[error("request body timed out")]
    BodyTimeout,
    /// SQLITE_FULL: the disk, or the `database.max_size_mb` quota, is full.
    #[error("the database disk is full")]
    StorageFull,
    /// The database file cannot be written or opened (read-only, I/O
    /// error): nothing the caller can fix, so it may retry later.
    #[error("{0}")]
    StorageUnavailable(&'static str),
    /// The database stayed locked (by another process) past the busy
    /// timeout: the caller may retry.
    #[error("database is busy, retry shortly")]
    Busy,
    /// Detail is logged where the error is made, never sent.
    #[error("internal server error")]
    Internal,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::NotFound(message.into())
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::Forbidden(message.into())
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::Conflict(message.into())
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::Unauthorized(message.into())
    }

    /// Whether this is a storage failure (full, read-only, I/O) rather than
    /// a problem of the request.
    pub fn is_storage_fault(&self) -> bool {
        matches!(
            self,
            ApiError::StorageFull | ApiError::StorageUnavailable(_)
        )
    }

    /// Logs `detail` and yields the generic 500.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        log::error!("internal error: {detail}");
        ApiError::Internal
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::StorageUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = self.to_string();
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Busy => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::StorageUnavailable(_) => {
                response.insert_header((header::RETRY_AFTER, STORAGE_RETRY_AFTER_SECS));
            }
            ApiError::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::MethodNotAllowed { allow } => {
                response.insert_header((header::ALLOW, allow.as_str()));
            }
            // the rest of the body is never read: the connection cannot be
            // reused
            ApiError::BodyTimeout => {
                response.force_close();
            }
            _ => {}
        }
        response.json(ErrorBody { error: &message })
    }
}

/// What a 503 for unwritable storage tells the client to wait, in seconds:
/// long enough for an operator, short enough not to strand a daemon.
const STORAGE_RETRY_AFTER_SECS: &str = "30";

/// The storage failures callers are told about, by SQLite primary code.
fn storage_error(code: ErrorCode) -> Option<ApiError> {
    let unavailable = ApiError::StorageUnavailable;
    match code {
        ErrorCode::DiskFull => Some(ApiError::StorageFull),
        ErrorCode::ReadOnly => Some(unavailable("the database is read-only, retry later")),
        ErrorCode::SystemIoFailure => Some(unavailable(
            "the database storage failed (I/O error), retry later",
        )),
        ErrorCode::CannotOpen => Some(unavailable(
            "the database file cannot be opened, retry later",
        )),
        _ => None,
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(err: rusqlite::Error) -> ApiError {
        if let rusqlite::Error::SqliteFailure(e, _) = &err {
            if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) {
                log::warn!("database busy: {err}");
                return ApiError::Busy;
            }
            if let Some(storage) = storage_error(e.code) {
                log::error!("database storage: {err}");
                return storage;
            }
        }
        ApiError::internal(format!("database: {err}"))
    }
}

impl From<r2d2::Error> for ApiError {
    fn from(err: r2d2::Error) -> ApiError {
        ApiError::internal(format!("connection pool: {err}"))
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(err: actix_web::error::BlockingError) -> ApiError {
        ApiError::internal(format!("blocking pool: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::ffi;

    fn sqlite_error(code: std::os::raw::c_int) -> ApiError {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), None).into()
    }

    #[test]
    fn read_only_database_is_a_503_with_retry_after() {
        for code in [ffi::SQLITE_READONLY, ffi::SQLITE_READONLY_DBMOVED] {
            let err = sqlite_error(code);
            assert!(err.is_storage_fault());
            let response = err.error_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "30");
            assert_eq!(err.to_string(), "the database is read-only, retry later");
        }
    }

    #[test]
    fn full_disk_is_a_507() {
        let err = sqlite_error(ffi::SQLITE_FULL);
        assert_eq!(err.status_code(), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(err.to_string(), "the database disk is full");
    }

    #[test]
    fn io_errors_are_503_and_other_failures_stay_generic() {
        let err = sqlite_error(ffi::SQLITE_IOERR_WRITE);
        assert_eq!(err.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.is_storage_fault());
        let err = sqlite_error(ffi::SQLITE_CORRUPT);
        assert_eq!(err.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(err.to_string(), "internal server error");
    }
}
