//! The one error type of the HTTP API: every failure becomes
//! `{"error": "<message>"}` with its status. This is the edge: a store
//! error is mapped to its status here, once, and internal failures are
//! logged here, once, with their detail, and answered with a generic 500, so
//! nothing about the server's insides reaches a caller; storage that cannot
//! be written (disk full, read-only, I/O errors) gets a message of its own
//! so an operator knows what to fix.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::store;

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
    /// A 409 whose body says more than the message: its other fields
    /// (`code` and what a client needs to resolve it) sit beside `error`.
    #[error("{0}")]
    ConflictWith(String, serde_json::Map<String, serde_json::Value>),
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
    /// What the store said: not found 404, conflict 409, busy 503 with
    /// `Retry-After: 1`, full 507, unavailable 503, internal 500.
    #[error("{}", store_message(.0))]
    Store(store::Error),
    /// Anything else that is the server's fault; the detail is logged when
    /// the response is made, never sent.
    #[error("internal server error")]
    Internal(String),
}

/// What a client is told of a store error: internal detail never.
fn store_message(err: &store::Error) -> String {
    match err {
        store::Error::Internal(_) => "internal server error".to_string(),
        other => other.to_string(),
    }
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
        matches!(self, ApiError::Store(e) if e.is_storage_fault())
    }

    /// The generic 500; `detail` is logged when the response is made.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(detail.to_string())
    }

    /// Logs what only the operator should see: once per HTTP response,
    /// and by each other path (daemon socket, event stream) that turns the
    /// error into something else.
    pub fn log(&self) {
        match self {
            ApiError::Internal(detail) | ApiError::Store(store::Error::Internal(detail)) => {
                log::error!("internal error: {detail}")
            }
            ApiError::Store(store::Error::Busy) => log::warn!("database busy"),
            _ => {}
        }
    }
}

impl From<store::Error> for ApiError {
    fn from(err: store::Error) -> ApiError {
        ApiError::Store(err)
    }
}

impl store::Failure for ApiError {
    fn store_error(&self) -> Option<&store::Error> {
        match self {
            ApiError::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::ConflictWith(..) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Store(e) => match e {
                store::Error::NotFound(_) => StatusCode::NOT_FOUND,
                store::Error::Conflict(_) => StatusCode::CONFLICT,
                store::Error::Busy | store::Error::Unavailable(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                store::Error::Full => StatusCode::INSUFFICIENT_STORAGE,
                store::Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.log();
        let message = self.to_string();
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Store(store::Error::Busy) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::Store(store::Error::Unavailable(_)) => {
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
            ApiError::ConflictWith(_, fields) => {
                let mut body = fields.clone();
                body.insert("error".to_string(), serde_json::Value::String(message));
                return response.json(body);
            }
            _ => {}
        }
        response.json(ErrorBody { error: &message })
    }
}

/// What a 503 for unwritable storage tells the client to wait, in seconds:
/// long enough for an operator, short enough not to strand a daemon.
const STORAGE_RETRY_AFTER_SECS: &str = "30";

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(err: actix_web::error::BlockingError) -> ApiError {
        ApiError::internal(format!("blocking pool: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_database_is_a_503_with_retry_after() {
        let err = ApiError::from(store::Error::Unavailable(
            "the database is read-only, retry later",
        ));
        assert!(err.is_storage_fault());
        let response = err.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "30");
        assert_eq!(err.to_string(), "the database is read-only, retry later");
    }

    #[test]
    fn full_disk_is_a_507_and_busy_a_503_with_retry_after() {
        let err = ApiError::from(store::Error::Full);
        assert_eq!(err.status_code(), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(err.to_string(), "the database disk is full");
        let response = ApiError::from(store::Error::Busy).error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "1");
    }

    #[test]
    fn store_conflicts_are_409_and_internal_detail_is_never_sent() {
        let err = ApiError::from(store::Error::conflict(
            "a user with email a@b already exists",
        ));
        assert_eq!(err.status_code(), StatusCode::CONFLICT);
        assert_eq!(err.to_string(), "a user with email a@b already exists");
        let err = ApiError::from(store::Error::internal("database: disk image is malformed"));
        assert_eq!(err.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(err.to_string(), "internal server error");
        let err = ApiError::internal("secret detail");
        assert_eq!(err.to_string(), "internal server error");
    }
}
