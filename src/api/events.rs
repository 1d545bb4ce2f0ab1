//! `GET /api/events`: the workspace's live events as Server-Sent Events
//! (`event: <type>` / `data: <json>`), with keep-alive comments, so
//! `curl -N` and the dashboard can follow them.
//!
//! Each stream is a subscriber of the in-process bus (see `events` for its
//! bounds: a client that falls behind is dropped and reconnects). A stream
//! delivers an agent's events only to members who may read that agent, and
//! ends when its token is revoked or expires or its user leaves the
//! workspace (checked on every access change and every keep-alive period).
//! At shutdown every stream ends, so open dashboards do not hold the server
//! up.

use std::convert::Infallible;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_lab::sse;
use futures_util::stream;

use crate::auth::{self, WorkspaceAccess};
use crate::domain::{Role, UserId, WorkspaceId};
use crate::error::ApiError;
use crate::events::{EventBus, StreamSlot, Subscription, STREAMS_PER_USER};
use crate::store::Store;

const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Access changes are re-checked at most this often per stream, so a burst
/// of revocations cannot turn every open stream into a database loop.
const RECHECK_GAP: Duration = Duration::from_secs(1);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/events", web::get().to(events));
}

/// One open stream: whom it serves and what it follows.
struct Follower {
    db: Store,
    subscription: Subscription,
    closing: tokio::sync::watch::Receiver<bool>,
    access: tokio::sync::watch::Receiver<u64>,
    token_hash: String,
    user: UserId,
    workspace: WorkspaceId,
    role: Role,
    /// Re-checks the caller's access even while events keep flowing.
    recheck: tokio::time::Interval,
    last_check: std::time::Instant,
    ended: bool,
    _slot: StreamSlot,
}

enum Step {
    Deliver(sse::Event),
    End,
}

impl Follower {
    /// Checks again that the caller may follow the workspace, with the
    /// role they have now.
    async fn still_allowed(&mut self) -> bool {
        let since = self.last_check.elapsed();
        if since < RECHECK_GAP {
            actix_web::rt::time::sleep(RECHECK_GAP - since).await;
        }
        self.last_check = std::time::Instant::now();
        match auth::current_role(&self.db, self.token_hash.clone(), self.user, self.workspace).await
        {
            Ok(Some(role)) => {
                self.role = role;
                true
            }
            Ok(None) => false,
            // a database hiccup is no reason to end a stream
            Err(e) => {
                e.log();
                true
            }
        }
    }

    async fn next(&mut self) -> Step {
        loop {
            if self.ended || *self.closing.borrow() {
                return Step::End;
            }
            tokio::select! {
                _ = self.closing.changed() => return Step::End,
                changed = self.access.changed() => {
                    if changed.is_err() || !self.still_allowed().await {
                        return Step::End;
                    }
                }
                _ = self.recheck.tick() => {
                    if !self.still_allowed().await {
                        return Step::End;
                    }
                }
                event = self.subscription.recv() => match event {
                    Some(event) if event.audience.may_read(self.user, self.role) => {
                        let data = sse::Data::new(event.data.clone()).event(event.kind.to_string());
                        return Step::Deliver(data.into());
                    }
                    Some(_) => continue,
                    None => {
                        // dropped by the bus for falling behind
                        self.ended = true;
                        let note = "dropped: the client fell behind; reconnect";
                        return Step::Deliver(sse::Event::Comment(note.into()));
                    }
                },
            }
        }
    }
}

async fn events(
    req: HttpRequest,
    db: web::Data<Store>,
    bus: web::Data<EventBus>,
    access: WorkspaceAccess,
) -> Result<HttpResponse, ApiError> {
    let token_hash = auth::bearer_hash(&req)?;
    let slot = bus.open_stream(access.user_id).ok_or_else(|| {
        ApiError::TooManyRequests(format!(
            "too many open event streams for this user (at most {STREAMS_PER_USER})"
        ))
    })?;
    let follower = Follower {
        db: db.get_ref().clone(),
        subscription: bus.subscribe(access.workspace_id),
        closing: bus.closing(),
        access: bus.access(),
        token_hash,
        user: access.user_id,
        workspace: access.workspace_id,
        role: access.role,
        recheck: tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE),
        last_check: std::time::Instant::now(),
        ended: false,
        _slot: slot,
    };
    let events = stream::unfold(follower, |mut follower| async move {
        match follower.next().await {
            Step::Deliver(event) => Some((Ok::<_, Infallible>(event), follower)),
            Step::End => None,
        }
    });
    let sse = sse::Sse::from_stream(events).with_keep_alive(KEEP_ALIVE);
    Ok(actix_web::Responder::respond_to(sse, &req).map_into_boxed_body())
}
