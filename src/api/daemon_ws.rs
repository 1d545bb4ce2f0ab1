//! `GET /api/daemon/ws?runtime_ids=a,b`: a daemon's control socket, the
//! WebSocket the current Multica daemon keeps open beside its HTTP calls so
//! that queued work reaches it at once instead of at its next poll.
//!
//! Frames are JSON text, `{"type": …, "payload": {…}}`:
//! * server → daemon `daemon:task_available {runtime_id, task_id}` when a
//!   task is queued for one of the socket's runtimes (see `daemon_hub`);
//! * daemon → server `daemon:heartbeat {runtime_id}`, answered with
//!   `daemon:heartbeat_ack`: the reply of `POST /api/daemon/heartbeat` plus
//!   `runtime_id` and `server_capabilities`, or `{runtime_id, status:
//!   "runtime_gone", runtime_gone: true}` where HTTP answers 404;
//! * daemon → server `daemon:rpc_request {request_id, method, body,
//!   timeout_ms}`, answered with `daemon:rpc_response {request_id, status,
//!   body | error}`; the one method is `tasks.claim` (see `rpc`).
//!
//! Access: the socket acts for the member whose runtimes it names, all of
//! which the credential must reach when it opens (as on every daemon route)
//! and still reach later: it ends within a second of a revocation or a
//! member leaving, and within [`PING_EVERY`] of its token expiring.
//! Heartbeats and claims name only runtimes the socket was opened for.

mod rpc;
mod session;

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::access::require_daemon_runtime;
use crate::auth::{self, Caller};
use crate::daemon_hub::{DaemonHub, SOCKETS_PER_MEMBER};
use crate::domain::{RuntimeId, UserId};
use crate::error::ApiError;
use crate::events::EventBus;
use crate::heartbeats::Heartbeats;
use crate::store::Conn;
use crate::store::Store;

/// The route, for the parts of the server that treat it apart.
pub const PATH: &str = "/api/daemon/ws";
/// Largest frame (or fragmented message) a daemon may send: its biggest is
/// a claim naming every runtime of its machine, a few KiB.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// How often the server pings; the daemon gives up on a socket that is
/// silent for 60 s.
pub const PING_EVERY: Duration = Duration::from_secs(20);
/// A socket on which nothing arrives (no heartbeat, no pong) for this long
/// is dead and ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The capability a heartbeat ack must list for the daemon to claim over
/// the socket.
pub const RPC_V1: &str = "rpc-v1";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/daemon/ws", web::get().to(connect));
}

/// What a socket uses of the server, from the app's data.
#[derive(Clone)]
struct Services {
    db: Store,
    events: EventBus,
    heartbeats: Heartbeats,
    hub: DaemonHub,
}

fn data<T: Clone + 'static>(req: &HttpRequest) -> Result<T, ApiError> {
    req.app_data::<web::Data<T>>()
        .map(|d| d.get_ref().clone())
        .ok_or_else(|| {
            ApiError::internal(format!(
                "{} missing from app data",
                std::any::type_name::<T>()
            ))
        })
}

impl Services {
    fn of(req: &HttpRequest) -> Result<Services, ApiError> {
        Ok(Services {
            db: data(req)?,
            events: data(req)?,
            heartbeats: data(req)?,
            hub: data(req)?,
        })
    }
}

/// The runtimes a socket names: `runtime_ids=a,b` (the daemon's form) and
/// `runtime_id=a`, repeatable; blanks and repeats are skipped.
fn runtime_ids(query: &str) -> Result<Vec<RuntimeId>, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let mut ids = Vec::new();
    for (key, value) in pairs.into_inner() {
        if key != "runtime_ids" && key != "runtime_id" {
            continue;
        }
        for raw in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let id: RuntimeId = raw
                .parse()
                .map_err(|e| ApiError::bad_request(format!("invalid runtime_ids: {e}")))?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    let most = super::daemon::MAX_RUNTIMES_PER_REGISTRATION;
    if ids.len() > most {
        return Err(ApiError::bad_request(format!(
            "runtime_ids lists at most {most} runtimes"
        )));
    }
    if ids.is_empty() {
        return Err(ApiError::bad_request("runtime_ids is required"));
    }
    Ok(ids)
}

/// The member the socket acts for, once the caller reaches every runtime
/// named (404 `runtime not found` otherwise, as on every daemon route).
fn authorize(conn: &Conn<'_>, caller: &Caller, ids: &[RuntimeId]) -> Result<UserId, ApiError> {
    let mut owner = None;
    for id in ids {
        owner = require_daemon_runtime(conn, caller, *id)?.owner_id;
    }
    owner.ok_or_else(|| ApiError::not_found("runtime not found"))
}

/// Checks the caller and the runtimes, then upgrades: a request that is no
/// WebSocket handshake is a 400 (after the access checks, so it reveals
/// nothing more than any other daemon route).
async fn connect(
    req: HttpRequest,
    body: web::Payload,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let runtimes = runtime_ids(req.query_string())?;
    let token_hash = auth::bearer_hash(&req)?;
    let svc = Services::of(&req)?;
    let (check, ids) = (caller.clone(), runtimes.clone());
    let member = svc
        .db
        .read(move |conn| authorize(conn, &check, &ids))
        .await?;
    let (response, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::bad_request(format!("this route opens a WebSocket: {e}")))?;
    let socket = svc.hub.join(member, &runtimes).ok_or_else(|| {
        ApiError::TooManyRequests(format!(
            "too many open daemon sockets for this member (at most {SOCKETS_PER_MEMBER})"
        ))
    })?;
    let stream = stream
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    log::info!("daemon socket opened for {} runtime(s)", runtimes.len());
    let connection = session::Connection::new(svc, caller, token_hash, runtimes, socket, session);
    actix_web::rt::spawn(connection.run(stream));
    Ok(response)
}
