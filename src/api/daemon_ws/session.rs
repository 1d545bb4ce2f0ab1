//! One open daemon socket: what it reads, what it answers, what it is
//! pushed, and when it ends.

use std::future::Future;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Closed};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{rpc, Services, IDLE_TIMEOUT, MAX_FRAME_BYTES, PING_EVERY};
use crate::access::acts_for_runtime;
use crate::auth::{require_live, Caller};
use crate::daemon_hub::{Frame, Socket};
use crate::domain::{RuntimeId, Timestamp};
use crate::error::ApiError;
use crate::store::Conn;
use crate::store::{runtimes, tokens};

/// Time a write may wait for a daemon that does not read before the
/// socket ends.
const WRITE_WAIT: Duration = Duration::from_secs(10);
/// Access changes are re-checked at most this often per socket.
const RECHECK_GAP: Duration = Duration::from_secs(1);

const HEARTBEAT: &str = "daemon:heartbeat";
const HEARTBEAT_ACK: &str = "daemon:heartbeat_ack";
const RPC_REQUEST: &str = "daemon:rpc_request";
const RPC_RESPONSE: &str = "daemon:rpc_response";

/// One open socket.
pub(super) struct Connection {
    svc: Services,
    caller: Caller,
    token_hash: String,
    /// The runtimes it was opened for, all reached by `caller`.
    runtimes: Vec<RuntimeId>,
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
    /// A socket just upgraded, acting as `caller` for `runtimes`.
    pub(super) fn new(
        svc: Services,
        caller: Caller,
        token_hash: String,
        runtimes: Vec<RuntimeId>,
        socket: Socket,
        session: actix_ws::Session,
    ) -> Connection {
        Connection {
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
        }
    }

    pub(super) async fn run(mut self, mut stream: AggregatedMessageStream) {
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
            Ok(true) => Ok(()),
            // a database hiccup is no reason to end a socket
            Err(e) => {
                e.log();
                Ok(())
            }
        }
    }

    /// `daemon:heartbeat {runtime_id}` → the ack, for a runtime of this
    /// socket; `None` when there is nothing to answer.
    async fn heartbeat(&self, payload: Value) -> Option<String> {
        let id = payload
            .get("runtime_id")
            .and_then(Value::as_str)
            .and_then(|raw| raw.parse::<RuntimeId>().ok())
            .filter(|id| self.runtimes.contains(id))?;
        let svc = &self.svc;
        let caller = self.caller.clone();
        let ack = match crate::api::daemon::beat(&svc.db, &svc.heartbeats, caller, id).await {
            // the HTTP reply already names its runtime and lists rpc-v1
            Ok(reply) => serde_json::to_value(reply).ok()?,
            // where HTTP answers 404: the daemon registers again
            Err(ApiError::NotFound(_)) => {
                json!({"runtime_id": id, "status": "runtime_gone", "runtime_gone": true})
            }
            // the daemon's HTTP heartbeat takes over when acks stop
            Err(e) => {
                e.log();
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
            .filter(|id| !id.is_empty() && id.len() <= crate::api::MAX_SHORT_TEXT)?;
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
        Err(e) => {
            e.log();
            Response {
                request_id,
                status: actix_web::ResponseError::status_code(&e).as_u16(),
                body: None,
                error: Some(e.to_string()),
            }
        }
    };
    frame(RPC_RESPONSE, response)
}

/// Whether the socket's token is still live and the caller still reaches
/// every runtime of the socket that still exists (a deleted one is the
/// heartbeat's `runtime_gone`, not a reason to end the socket).
fn still_allowed(
    conn: &Conn<'_>,
    caller: &Caller,
    token_hash: &str,
    ids: &[RuntimeId],
) -> Result<bool, ApiError> {
    let stored = match caller {
        Caller::User { .. } => tokens::find_personal(conn, token_hash)?,
        Caller::Daemon(_) => tokens::find_daemon(conn, token_hash)?,
        Caller::Task(_) => None,
    };
    let now = Timestamp::now();
    let live = stored.is_some_and(|t| require_live(&t, now).is_ok());
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
