//! `GET /api/events`: the workspace's live events as Server-Sent Events
//! (`event: <type>` / `data: <json>`), with keep-alive comments, so
//! `curl -N` and the dashboard can follow them.
//!
//! Each stream is a subscriber of the in-process bus with a bounded buffer:
//! a slow client skips events it could not take in time (publishers never
//! wait), and a client that goes away drops its subscription with the
//! response.

use std::convert::Infallible;
use std::time::Duration;

use actix_web::{web, Responder};
use actix_web_lab::sse;
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::WorkspaceAccess;
use crate::events::EventBus;

const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/events", web::get().to(events));
}

async fn events(bus: web::Data<EventBus>, access: WorkspaceAccess) -> impl Responder {
    let receiver = bus.subscribe();
    let workspace = access.workspace_id;
    let events = stream::unfold(receiver, move |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(event) if event.workspace_id == workspace => {
                    let data = serde_json::json!({
                        "type": event.kind,
                        "workspace_id": event.workspace_id,
                        "payload": event.payload,
                    });
                    let message: sse::Event =
                        sse::Data::new(data.to_string()).event(event.kind).into();
                    return Some((Ok::<_, Infallible>(message), receiver));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    log::debug!("event stream of {workspace} skipped {missed} events");
                    let note = sse::Event::Comment(format!("skipped {missed} events").into());
                    return Some((Ok(note), receiver));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    sse::Sse::from_stream(events).with_keep_alive(KEEP_ALIVE)
}
