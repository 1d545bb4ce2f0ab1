//! A simulated current Multica daemon on `GET /api/daemon/ws`: frames are
//! `{"type", "payload"}` JSON text (`protocol.Message`).

use std::time::Duration;

use actix_codec::Framed;
use awc::ws::{Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::TestApp;

/// `protocol.Message`.
#[derive(Deserialize, Debug)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    pub payload: Value,
}

/// `protocol.RPCResponsePayload`.
#[derive(Deserialize, Debug)]
pub struct RpcResponse {
    pub request_id: String,
    pub status: u16,
    pub body: Option<Value>,
    #[serde(default)]
    pub error: String,
}

/// A simulated daemon holding a socket.
pub struct Daemon {
    pub io: Framed<BoxedSocket, Codec>,
}

/// Opens a socket naming `runtimes` with `token`; the refusal's status
/// otherwise.
pub async fn open(app: &TestApp, token: Option<&str>, runtimes: &[&str]) -> Result<Daemon, u16> {
    let url = format!(
        "{}/api/daemon/ws?runtime_ids={}",
        app.base.replacen("http", "ws", 1),
        runtimes.join(",")
    );
    let mut request = awc::Client::new().ws(url).max_frame_size(16 << 20);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    match request.connect().await {
        Ok((response, io)) => {
            assert_eq!(response.status(), 101);
            Ok(Daemon { io })
        }
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => Err(status.as_u16()),
        Err(e) => panic!("websocket connect: {e}"),
    }
}

impl Daemon {
    pub async fn send(&mut self, kind: &str, payload: Value) {
        let text = json!({"type": kind, "payload": payload}).to_string();
        self.io
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// The next frame, or `None` once the socket ended.
    pub async fn frame(&mut self) -> Option<Frame> {
        let next = actix_web::rt::time::timeout(Duration::from_secs(10), self.io.next());
        match next.await.expect("a frame within 10 s") {
            Some(Ok(frame)) => Some(frame),
            _ => None,
        }
    }

    /// The payload of the next text frame of `kind`, skipping others.
    pub async fn next(&mut self, kind: &str) -> Value {
        loop {
            match self.frame().await {
                Some(Frame::Text(bytes)) => {
                    let envelope: Envelope = serde_json::from_slice(&bytes).expect("envelope");
                    if envelope.kind == kind {
                        return envelope.payload;
                    }
                }
                Some(Frame::Close(reason)) => panic!("closed while waiting for {kind}: {reason:?}"),
                Some(_) => {}
                None => panic!("socket ended while waiting for {kind}"),
            }
        }
    }

    /// Sends `tasks.claim` and returns its response.
    pub async fn claim(&mut self, request_id: &str, body: Value) -> RpcResponse {
        let payload = json!({"request_id": request_id, "method": "tasks.claim", "body": body, "timeout_ms": 5000});
        self.send("daemon:rpc_request", payload).await;
        let response: RpcResponse =
            serde_json::from_value(self.next("daemon:rpc_response").await).expect("rpc response");
        assert_eq!(response.request_id, request_id);
        response
    }

    /// The reason of the close frame that ends the socket.
    pub async fn closed(&mut self) -> Option<awc::ws::CloseReason> {
        loop {
            match self.frame().await {
                Some(Frame::Close(reason)) => return reason,
                Some(_) => {}
                None => return None,
            }
        }
    }
}
