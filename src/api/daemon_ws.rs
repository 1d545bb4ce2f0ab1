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

use std::future::Future;
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Closed};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use crate::access::{acts_for_runtime, require_daemon_runtime};
use crate::auth::{self, Caller};
use crate::daemon_hub::{DaemonHub, Frame, Socket, SOCKETS_PER_MEMBER};
use crate::db::{self, runtimes, tokens, Db};
use crate::domain::Id;
use crate::error::ApiError;
use crate::events::EventBus;
use crate::heartbeats::Heartbeats;
use crate::probes::Probes;

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
/// Time a write may wait for a daemon that does not read before the
/// socket ends.
const WRITE_WAIT: Duration = Duration::from_secs(10);
/// Access changes are re-checked at most this often per socket.
const RECHECK_GAP: Duration = Duration::from_secs(1);
/// The capability a heartbeat ack must list for the daemon to claim over
/// the socket.
pub const RPC_V1: &str = "rpc-v1";

const HEARTBEAT: &str = "daemon:heartbeat";
const HEARTBEAT_ACK: &str = "daemon:heartbeat_ack";
const RPC_REQUEST: &str = "daemon:rpc_request";
const RPC_RESPONSE: &str = "daemon:rpc_response";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/daemon/ws", web::get().to(connect));
}

/// What a socket uses of the server, from the app's data.
#[derive(Clone)]
struct Services {
    db: Db,
    events: EventBus,
    probes: Probes,
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
            probes: data(req)?,
            heartbeats: data(req)?,
            hub: data(req)?,
        })
    }
}

/// The runtimes a socket names: `runtime_ids=a,b` (the daemon's form) and
/// `runtime_id=a`, repeatable; blanks and repeats are skipped.
fn runtime_ids(query: &str) -> Result<Vec<Id>, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let mut ids = Vec::new();
    for (key, value) in pairs.into_inner() {
        if key != "runtime_ids" && key != "runtime_id" {
            continue;
        }
        for raw in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let id: Id = raw
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
fn authorize(conn: &rusqlite::Connection, caller: &Caller, ids: &[Id]) -> Result<Id, ApiError> {
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
    let connection = Connection {
        closing: svc.hub.closing(),
        access: svc.events.access(),
        svc,
        caller,
        token_hash,
        runtimes,
        socket,
        session,
        last_heard: Instant::now(),
        last_check: Instant::now(),
    };
    actix_web::rt::spawn(connection.run(stream));
    Ok(response)
}

/// One open socket.
struct Connection {
    svc: Services,
    caller: Caller,
    token_hash: String,
    /// The runtimes it was opened for, all reached by `caller`.
    runtimes: Vec<Id>,
    socket: Socket,
    session: actix_ws::Session,
    closing: watch::Receiver<bool>,
    access: watch::Receiver<u64>,
    last_heard: Instant,
    last_check: Instant,
}

/// What woke a connection up.
enum Wake {
    Closing,
    Message(Option<Result<AggregatedMessage, actix_ws::ProtocolError>>),
    Push(Option<Frame>),
    Tick,
    AccessChanged,
}

/// Why a socket ends, and the close frame to send the daemon (none when
/// the connection is already gone).
struct Ending(Option<CloseReason>);

type Step = Result<(), Ending>;

fn ending(code: CloseCode, why: &str) -> Ending {
    Ending(Some(CloseReason {
        code,
        description: Some(why.to_string()),
    }))
}

/// A write that may wait for the daemon to read, but not forever.
async fn written(write: impl Future<Output = Result<(), Closed>>) -> Step {
    match tokio::time::timeout(WRITE_WAIT, write).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Ending(None)),
    }
}

impl Connection {
    async fn run(mut self, mut stream: AggregatedMessageStream) {
        let first = tokio::time::Instant::now() + PING_EVERY;
        let mut ticks = tokio::time::interval_at(first, PING_EVERY);
        let Ending(reason) = loop {
            if *self.closing.borrow() {
                break ending(CloseCode::Away, "the server is shutting down");
            }
            let wake = tokio::select! {
                _ = self.closing.changed() => Wake::Closing,
                message = stream.recv() => Wake::Message(message),
                frame = self.socket.frames.recv() => Wake::Push(frame),
                _ = ticks.tick() => Wake::Tick,
                Ok(()) = self.access.changed() => Wake::AccessChanged,
            };
            if let Err(ending) = self.on(wake).await {
                break ending;
            }
        };
        log::info!("daemon socket closed");
        if reason.is_some() {
            let _ = tokio::time::timeout(WRITE_WAIT, self.session.close(reason)).await;
        }
    }

    async fn on(&mut self, wake: Wake) -> Step {
        match wake {
            Wake::Closing => Err(ending(CloseCode::Away, "the server is shutting down")),
            Wake::Message(Some(Ok(message))) => {
                self.last_heard = Instant::now();
                self.on_message(message).await
            }
            Wake::Message(Some(Err(actix_ws::ProtocolError::Overflow))) => Err(ending(
                CloseCode::Size,
                &format!("a frame may have at most {MAX_FRAME_BYTES} bytes"),
            )),
            Wake::Message(Some(Err(e))) => Err(ending(CloseCode::Protocol, &e.to_string())),
            Wake::Message(None) => Err(Ending(None)),
            Wake::Push(Some(frame)) => self.send(frame.to_string()).await,
            Wake::Push(None) => Err(ending(
                CloseCode::Again,
                "this socket fell behind or a newer one replaced it; reconnect",
            )),
            Wake::Tick => self.on_tick().await,
            Wake::AccessChanged => self.recheck().await,
        }
    }

    async fn on_message(&mut self, message: AggregatedMessage) -> Step {
        match message {
            AggregatedMessage::Text(text) => self.on_text(&text).await,
            AggregatedMessage::Ping(bytes) => written(self.session.pong(&bytes)).await,
            // the protocol is JSON text; a pong only proves the daemon alive
            AggregatedMessage::Binary(_) | AggregatedMessage::Pong(_) => Ok(()),
            AggregatedMessage::Close(reason) => {
                Err(Ending(reason.or_else(|| Some(CloseCode::Normal.into()))))
            }
        }
    }

    /// Frames the daemon cannot have meant (junk, unknown types of a newer
    /// daemon) are skipped, as the daemon skips ours.
    async fn on_text(&mut self, text: &str) -> Step {
        #[derive(Deserialize)]
        struct Incoming {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            payload: Value,
        }
        let Ok(incoming) = serde_json::from_str::<Incoming>(text) else {
            return Ok(());
        };
        let reply = match incoming.kind.as_str() {
            HEARTBEAT => self.heartbeat(incoming.payload).await,
            RPC_REQUEST => self.rpc(incoming.payload).await,
            _ => None,
        };
        match reply {
            Some(text) => self.send(text).await,
            None => Ok(()),
        }
    }

    async fn send(&mut self, text: String) -> Step {
        written(self.session.text(text)).await
    }

    async fn on_tick(&mut self) -> Step {
        if self.last_heard.elapsed() >= IDLE_TIMEOUT {
            return Err(ending(
                CloseCode::Away,
                "nothing heard from the daemon for 60 s",
            ));
        }
        self.recheck().await?;
        written(self.session.ping(b"")).await
    }

    /// Ends the socket once its credential no longer reaches its runtimes.
    async fn recheck(&mut self) -> Step {
        let since = self.last_check.elapsed();
        if since < RECHECK_GAP {
            actix_web::rt::time::sleep(RECHECK_GAP - since).await;
        }
        self.last_check = Instant::now();
        let caller = self.caller.clone();
        let hash = self.token_hash.clone();
        let ids = self.runtimes.clone();
        let allowed = self
            .svc
            .db
            .read(move |conn| still_allowed(conn, &caller, &hash, &ids))
            .await;
        match allowed {
            Ok(false) => Err(ending(
                CloseCode::Policy,
                "the credential no longer reaches these runtimes",
            )),
            // a database hiccup is no reason to end a socket
            Ok(true) | Err(_) => Ok(()),
        }
    }

    /// `daemon:heartbeat {runtime_id}` → the ack, for a runtime of this
    /// socket; `None` when there is nothing to answer.
    async fn heartbeat(&self, payload: Value) -> Option<String> {
        let id = payload
            .get("runtime_id")
            .and_then(Value::as_str)
            .and_then(|raw| raw.parse::<Id>().ok())
            .filter(|id| self.runtimes.contains(id))?;
        let svc = &self.svc;
        let caller = self.caller.clone();
        let ack = match super::daemon::beat(&svc.db, &svc.probes, &svc.heartbeats, caller, id).await
        {
            Ok(reply) => ack_of(serde_json::to_value(reply).ok()?, id),
            // where HTTP answers 404: the daemon registers again
            Err(ApiError::NotFound(_)) => {
                json!({"runtime_id": id, "status": "runtime_gone", "runtime_gone": true})
            }
            // the daemon's HTTP heartbeat takes over when acks stop
            Err(e) => {
                log::warn!("heartbeat over a daemon socket failed: {e}");
                return None;
            }
        };
        frame(HEARTBEAT_ACK, ack)
    }

    /// `daemon:rpc_request` → `daemon:rpc_response`; a request without a
    /// usable `request_id` cannot be answered and is skipped.
    async fn rpc(&self, payload: Value) -> Option<String> {
        #[derive(Deserialize)]
        struct Request {
            request_id: Option<String>,
            method: Option<String>,
            #[serde(default)]
            body: Value,
            timeout_ms: Option<u64>,
        }
        let request = serde_json::from_value::<Request>(payload).ok()?;
        let request_id = request
            .request_id
            .filter(|id| !id.is_empty() && id.len() <= super::MAX_SHORT_TEXT)?;
        let deadline = request
            .timeout_ms
            .filter(|ms| *ms > 0)
            .and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
        let reply = match request.method.as_deref() {
            Some(rpc::CLAIM) => {
                let call = rpc::Call {
                    db: &self.svc.db,
                    events: &self.svc.events,
                    caller: &self.caller,
                    runtimes: &self.runtimes,
                };
                call.claim(request.body, deadline).await
            }
            other => Err(ApiError::not_found(format!(
                "unknown rpc method {:?}",
                other.unwrap_or_default()
            ))),
        };
        rpc_response(&request_id, reply)
    }
}

/// The HTTP heartbeat reply, made an ack: it names its runtime and lists
/// [`RPC_V1`] among the server's capabilities.
fn ack_of(reply: Value, id: Id) -> Value {
    let mut ack = match reply {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    ack.insert("runtime_id".into(), json!(id));
    let capabilities = ack
        .entry("server_capabilities")
        .or_insert_with(|| json!([]));
    if let Some(list) = capabilities.as_array_mut() {
        if !list.iter().any(|c| c == RPC_V1) {
            list.push(json!(RPC_V1));
        }
    }
    Value::Object(ack)
}

fn frame(kind: &str, payload: impl Serialize) -> Option<String> {
    #[derive(Serialize)]
    struct Outgoing<'a, P> {
        #[serde(rename = "type")]
        kind: &'a str,
        payload: P,
    }
    serde_json::to_string(&Outgoing { kind, payload })
        .map_err(|e| log::error!("cannot serialize a daemon socket frame: {e}"))
        .ok()
}

/// A reply in the shape of the HTTP route's: `status` and `body` on
/// success, `status` and `error` otherwise.
fn rpc_response(request_id: &str, reply: Result<rpc::Reply, ApiError>) -> Option<String> {
    #[derive(Serialize)]
    struct Response<'a> {
        request_id: &'a str,
        status: u16,
        #[serde(skip_serializing_if = "Option::is_none")]
        body: Option<rpc::Reply>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    }
    let response = match reply {
        Ok(body) => Response {
            request_id,
            status: 200,
            body: Some(body),
            error: None,
        },
        Err(e) => Response {
            request_id,
            status: actix_web::ResponseError::status_code(&e).as_u16(),
            body: None,
            error: Some(e.to_string()),
        },
    };
    frame(RPC_RESPONSE, response)
}

/// Whether the socket's token is still live and the caller still reaches
/// every runtime of the socket that still exists (a deleted one is the
/// heartbeat's `runtime_gone`, not a reason to end the socket).
fn still_allowed(
    conn: &rusqlite::Connection,
    caller: &Caller,
    token_hash: &str,
    ids: &[Id],
) -> Result<bool, ApiError> {
    let stored = match caller {
        Caller::User { .. } => tokens::find_personal(conn, token_hash)?,
        Caller::Daemon(_) => tokens::find_daemon(conn, token_hash)?,
        Caller::Task(_) => None,
    };
    let now = db::now();
    let live = stored
        .is_some_and(|t| !t.revoked && t.expires_at.as_deref().is_none_or(|at| at > now.as_str()));
    if !live {
        return Ok(false);
    }
    for id in ids {
        if let Some(runtime) = runtimes::get(conn, *id)? {
            if !acts_for_runtime(conn, caller, &runtime)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}
