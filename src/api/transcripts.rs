//! Task transcripts: a daemon reports what its agent said and did
//! (`POST /api/daemon/tasks/{id}/messages`), agenthub redacts secrets
//! (`crate::redact`), stores each message once per `seq` and publishes the
//! new ones as `task:message`; members who may read the task's agent read
//! it back (`GET /api/tasks/{id}/messages`), and so does the daemon
//! (`GET /api/daemon/tasks/{id}/messages`).
//!
//! Bounds: a message is at most [`MAX_MESSAGE_BYTES`] of JSON as sent, a
//! task's transcript at most [`MAX_TRANSCRIPT_BYTES`] of stored text; past
//! either the whole batch is refused with 413 and nothing is stored (never
//! a silent cut). A page of a transcript holds at most [`MAX_PAGE`]
//! messages and about [`MAX_PAGE_BYTES`].

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::tasks::audience_of;
use crate::access::{require_daemon_task, require_task_reader};
use crate::auth::{AuthUser, Caller};
use crate::domain::{TaskId, TaskStatus};
use crate::error::ApiError;
use crate::events::EventBus;
use crate::redact;
use crate::store::transcripts::{self, Message, NewMessage};
use crate::store::Store;

/// Largest message, as the JSON object the daemon sent.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Most text stored for one task's transcript.
pub const MAX_TRANSCRIPT_BYTES: i64 = 16 * 1024 * 1024;
/// Longest `type` and `tool` of a message, in bytes.
const MAX_TYPE_BYTES: usize = 64;
const MAX_TOOL_BYTES: usize = 256;
/// Largest seq: the daemon counts in 32-bit integers.
const MAX_SEQ: i64 = i32::MAX as i64;
/// Messages per page, by default and at most.
pub const DEFAULT_PAGE: usize = 500;
pub const MAX_PAGE: usize = 1000;
/// A page ends after the message that brings it past this many bytes of
/// stored text.
pub const MAX_PAGE_BYTES: i64 = 1024 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/tasks/{id}/messages", web::get().to(read))
        .route("/daemon/tasks/{id}/messages", web::get().to(daemon_read))
        .route("/daemon/tasks/{id}/messages", web::post().to(report));
}

/// 400 for a message field.
fn bad(i: usize, what: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("messages[{i}].{what}"))
}

/// An optional text field of message `i`: a string without NUL of at most
/// `max` bytes (when given).
fn text_field(
    message: &Map<String, Value>,
    i: usize,
    field: &str,
    max: Option<usize>,
) -> Result<Option<String>, ApiError> {
    let text = match message.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => return Err(bad(i, format!("{field} must be a string"))),
    };
    if text.contains('\0') {
        return Err(bad(i, format!("{field} must not contain NUL characters")));
    }
    if let Some(max) = max.filter(|max| text.len() > *max) {
        return Err(bad(i, format!("{field} is too long (at most {max} bytes)")));
    }
    Ok(Some(text.clone()))
}

/// Message `i` of a batch, checked and redacted.
fn parse_message(i: usize, value: &Value) -> Result<NewMessage, ApiError> {
    let Value::Object(message) = value else {
        return Err(ApiError::bad_request(format!(
            "messages[{i}] must be an object"
        )));
    };
    if value.to_string().len() > MAX_MESSAGE_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "messages[{i}] is too large (limit {MAX_MESSAGE_BYTES} bytes)"
        )));
    }
    let seq = message
        .get("seq")
        .and_then(Value::as_i64)
        .filter(|seq| (0..=MAX_SEQ).contains(seq))
        .ok_or_else(|| bad(i, format!("seq must be an integer from 0 to {MAX_SEQ}")))?;
    let kind = text_field(message, i, "type", Some(MAX_TYPE_BYTES))?
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| bad(i, "type is required"))?;
    let input = match message.get("input") {
        None | Some(Value::Null) => None,
        Some(input @ Value::Object(_)) => {
            super::json_without_nul(input, &format!("messages[{i}].input"))?;
            Some(redact::json(input.clone()))
        }
        Some(_) => return Err(bad(i, "input must be an object")),
    };
    let redacted = |text: Option<String>| text.map(|t| redact::text(&t).into_owned());
    Ok(NewMessage {
        seq,
        kind,
        tool: text_field(message, i, "tool", Some(MAX_TOOL_BYTES))?,
        content: redacted(text_field(message, i, "content", None)?),
        input,
        output: redacted(text_field(message, i, "output", None)?),
    })
}

/// `{messages: [{seq, type, tool?, content?, input?, output?}]}`: stores
/// the messages whose seq the task does not have yet, all in one
/// statement, and publishes each new one as `task:message` (redacted, as
/// stored) to those who may read the task's agent. Any invalid message
/// refuses the batch. A finished task still takes them (a daemon's last
/// flush may arrive just after its `complete`); a queued one has nothing
/// to report.
async fn report(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: Caller,
    path: web::Path<TaskId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let body = super::json_object(&body)?;
    let messages = match body.get("messages") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, m)| parse_message(i, m))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(ApiError::bad_request("messages must be an array")),
    };
    let (task, audience, appended) = db
        .write(move |tx| -> Result<_, ApiError> {
            let task = require_daemon_task(tx, &caller, id)?;
            if task.status == TaskStatus::Queued {
                return Err(ApiError::bad_request("cannot report on task: it is queued"));
            }
            let audience = audience_of(tx, &task)?;
            if messages.is_empty() {
                return Ok((task, audience, None));
            }
            let appended = transcripts::append(tx, id, &messages)?;
            if appended.total_bytes > MAX_TRANSCRIPT_BYTES {
                // the write's error undoes what it stored
                return Err(ApiError::PayloadTooLarge(format!(
                    "the transcript of this task is full (limit {MAX_TRANSCRIPT_BYTES} bytes)"
                )));
            }
            Ok((task, audience, Some(appended)))
        })
        .await?;
    for message in appended.map(|a| a.messages).unwrap_or_default() {
        let mut payload = json!(message);
        payload["agent_id"] = json!(task.agent_id);
        events.publish_to("task:message", task.workspace_id, audience, payload);
    }
    Ok(super::ok())
}

#[derive(Deserialize)]
struct PageQuery {
    after_seq: Option<String>,
    /// Multica's name for `after_seq`.
    since: Option<String>,
    limit: Option<String>,
}

/// Which messages a request asks for: after which seq, how many.
struct Wanted {
    after: Option<i64>,
    limit: usize,
}

fn wanted(req: &HttpRequest) -> Result<Wanted, ApiError> {
    let query = web::Query::<PageQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let query = query.into_inner();
    let after =
        match query.after_seq.or(query.since).as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => Some(raw.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                ApiError::bad_request("after_seq must be a non-negative integer")
            })?),
        };
    let limit = match query.limit.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_PAGE,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be an integer between 1 and {MAX_PAGE}"))
            })?,
    };
    Ok(Wanted { after, limit })
}

/// One page of messages as a JSON array in seq order; when more follow,
/// `X-Next-Cursor: <last seq>` and a `Link` to the next page
/// (`after_seq=<last seq>`).
async fn page(
    db: &Store,
    req: &HttpRequest,
    id: TaskId,
    authorize: impl FnOnce(&crate::store::Conn<'_>) -> Result<(), ApiError> + Send + 'static,
) -> Result<HttpResponse, ApiError> {
    let Wanted { after, limit } = wanted(req)?;
    let mut rows = db
        .read(move |conn| -> Result<_, ApiError> {
            authorize(conn)?;
            Ok(transcripts::list(conn, id, after, limit + 1)?)
        })
        .await?;
    let mut more = rows.len() > limit;
    rows.truncate(limit);
    let mut bytes = 0;
    if let Some(cut) = rows.iter().position(|m| {
        bytes += json!(m).to_string().len() as i64;
        bytes > MAX_PAGE_BYTES
    }) {
        more |= cut + 1 < rows.len();
        rows.truncate(cut + 1);
    }
    let mut reply = HttpResponse::Ok();
    if let Some(last) = rows.last().filter(|_| more).map(|m: &Message| m.seq) {
        let last = last.to_string();
        let link = super::page::next_link(req, "after_seq", &last, &["since"]);
        reply.insert_header((header::LINK, link));
        reply.insert_header((super::page::NEXT_CURSOR, last));
    }
    Ok(reply.json(rows))
}

/// Members who may read the task's agent (its owner's, a workspace's
/// agent, or anyone's for owners/admins) read its transcript.
async fn read(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<TaskId>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    page(&db, &req, id, move |conn| {
        require_task_reader(conn, caller.user_id, id).map(|_| ())
    })
    .await
}

/// The daemon reads back what it reported (after a restart, say).
async fn daemon_read(
    db: web::Data<Store>,
    caller: Caller,
    path: web::Path<TaskId>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    page(&db, &req, id, move |conn| {
        require_daemon_task(conn, &caller, id).map(|_| ())
    })
    .await
}
