//! `GET /api/events`: the workspace's live events as Server-Sent Events
//! (`event: <type>` / `data: <json>`), with keep-alive comments, so
//! `curl -N` and the dashboard can follow them.
//!
//! Each stream is a subscriber of the in-process bus with a bounded buffer:
//! a slow client skips events it could not take in time (publishers never
//! wait), and a client that goes away drops its subscription with the
//! response. At shutdown every stream ends, so open dashboards do not hold
//! the server up.

use std::convert::Infallible;
use std::time::Duration;

use actix_web::{web, Responder};
use actix_web_lab::sse;
use futures_util::future::{self, Either};
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::WorkspaceAccess;
use crate::events::EventBus;

const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/events", web::get().to(events));
}

async fn events(bus: web::Data<EventBus>, access: WorkspaceAccess) -> impl Responder {
    let workspace = access.workspace_id;
    let state = (bus.subscribe(), bus.closing());
    let events = stream::unfold(state, move |(mut receiver, mut closing)| async move {
        loop {
            if *closing.borrow() {
                return None;
            }
            let next = {
                let recv = receiver.recv();
                let closed = closing.changed();
                futures_util::pin_mut!(recv, closed);
                match future::select(recv, closed).await {
                    Either::Left((next, _)) => next,
                    // shutting down (or the bus is gone): end the stream
                    Either::Right(_) => return None,
                }
            };
            match next {
                Ok(event) if event.workspace_id == workspace => {
                    let data = serde_json::json!({
                        "type": event.kind,
                        "workspace_id": event.workspace_id,
                        "payload": event.payload,
                    });
                    let message: sse::Event =
                        sse::Data::new(data.to_string()).event(event.kind).into();
                    return Some((Ok::<_, Infallible>(message), (receiver, closing)));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    log::debug!("event stream of {workspace} skipped {missed} events");
                    let note = sse::Event::Comment(format!("skipped {missed} events").into());
                    return Some((Ok(note), (receiver, closing)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    sse::Sse::from_stream(events).with_keep_alive(KEEP_ALIVE)
}
