//! The server's HTTP edge: what answers before, around or instead of the
//! route handlers — the body deadline, the JSON shape of every error, and
//! 404/405 for requests no route takes.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::rt::time::{sleep, Sleep};
use actix_web::web::Bytes;
use actix_web::HttpRequest;
use futures_util::Stream;

use crate::app::MAX_BODY_BYTES;
use crate::error::ApiError;

/// The message of every 413, whichever extractor refused the body.
pub fn too_large_message() -> String {
    format!("request body too large (limit {MAX_BODY_BYTES} bytes)")
}

/// A request body that must arrive whole before a deadline: past it the
/// stream ends with an error (which the extractor reading it turns into a
/// 400) and raises `expired`, so the middleware can answer 408 instead.
struct BodyDeadline {
    body: Payload,
    timer: Pin<Box<Sleep>>,
    expired: Rc<Cell<bool>>,
}

impl Stream for BodyDeadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.expired.get() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(chunk) = Pin::new(&mut this.body).poll_next(cx) {
            return Poll::Ready(chunk);
        }
        if this.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.expired.set(true);
        let timed_out = std::io::Error::new(std::io::ErrorKind::TimedOut, "request body timed out");
        Poll::Ready(Some(Err(PayloadError::Io(timed_out))))
    }
}

/// Gives `req`'s body (if it has one) `limit` to arrive, counted from now,
/// that is from the end of its headers (actix times those itself). Returns
/// the flag that says the deadline passed. The frames of the daemon socket
/// are no body to wait for: they flow for the socket's life, which its own
/// idle timeout bounds.
pub fn with_body_deadline(
    req: ServiceRequest,
    limit: Duration,
) -> (ServiceRequest, Rc<Cell<bool>>) {
    let expired = Rc::new(Cell::new(false));
    let (http, body) = req.into_parts();
    let socket = http.path() == crate::api::daemon_ws::PATH && http.head().upgrade();
    if socket || matches!(body, Payload::None) {
        return (ServiceRequest::from_parts(http, body), expired);
    }
    let timed = BodyDeadline {
        body,
        timer: Box::pin(sleep(limit)),
        expired: expired.clone(),
    };
    let payload: Pin<Box<dyn Stream<Item = _>>> = Box::pin(timed);
    let body = Payload::Stream { payload };
    (ServiceRequest::from_parts(http, body), expired)
}

/// The 408 that replaces whatever the handler made of a body that timed
/// out.
pub fn body_timed_out<B>(res: ServiceResponse<B>) -> ServiceResponse<BoxBody> {
    use actix_web::ResponseError;
    res.into_response(ApiError::BodyTimeout.error_response())
}

/// Rewrites an error response that actix, an extractor or a middleware
/// made as text (a 413 from `web::Bytes`, a CORS refusal…) into the API's
/// `{"error": "<message>"}`; JSON bodies pass unchanged, and so do headers.
pub fn json_error_body<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .response()
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let res = res.map_body(|head, body| {
        let text = body.try_into_bytes().ok();
        let message = error_message(status, text.as_deref());
        head.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let body = serde_json::json!({ "error": message }).to_string();
        EitherBody::right(BoxBody::new(body))
    });
    Ok(ErrorHandlerResponse::Response(res))
}

/// The message for a non-JSON error: actix's own text for client errors
/// (it names what was wrong), the status alone for server errors (their
/// text may describe the server's insides; it goes to the log).
fn error_message(status: StatusCode, text: Option<&[u8]>) -> String {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large_message();
    }
    let text = text
        .and_then(|t| std::str::from_utf8(t).ok())
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let reason = || {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    };
    match text {
        Some(text) if status.is_server_error() => {
            log::error!("{status}: {text}");
            reason()
        }
        Some(text) => text.to_string(),
        None => reason(),
    }
}

/// Requests no route takes: 405 with `Allow` when the path exists with
/// other methods, 404 otherwise.
pub async fn unrouted(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    let path = req.path();
    let mut allowed = crate::api::openapi::allowed_methods(path);
    // the dashboard's pages are not API routes, and take GET only
    if path == "/" || path.starts_with("/static/") {
        allowed = vec!["GET".to_string()];
    }
    if crate::api::HEAD_PATHS.contains(&path) {
        allowed.push("HEAD".to_string());
    }
    let method = req.method().as_str();
    if allowed.is_empty() || allowed.iter().any(|m| m == method) {
        return Err(ApiError::not_found("not found"));
    }
    Err(ApiError::MethodNotAllowed {
        allow: allowed.join(", "),
    })
}
