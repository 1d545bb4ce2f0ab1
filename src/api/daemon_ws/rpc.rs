//! `tasks.claim` over the daemon socket: the batch claim of
//! `POST /api/daemon/tasks/claim` with the same body, rules and reply,
//! among the runtimes the socket was opened for. Each claim is one write
//! transaction that re-checks the caller's reach, dispatches and mints
//! every claimed task's `auth_token`.

use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};

use crate::api::claims::{announce, dispatch_batch, BatchClaim, ClaimedTask, Wanted};
use crate::auth::Caller;
use crate::domain::RuntimeId;
use crate::error::ApiError;
use crate::events::EventBus;
use crate::store::Store;

/// The method name the daemon sends.
pub const CLAIM: &str = "tasks.claim";

/// One request on one socket.
pub(super) struct Call<'a> {
    pub db: &'a Store,
    pub events: &'a EventBus,
    pub caller: &'a Caller,
    /// The socket's runtimes.
    pub runtimes: &'a [RuntimeId],
}

/// The reply body, as the HTTP route's: `{"tasks": [...]}`.
#[derive(Serialize)]
pub(super) struct Reply {
    tasks: Vec<ClaimedTask>,
}

impl Call<'_> {
    /// Claims up to `max_tasks` tasks. A claim that could not start before
    /// `deadline` (the daemon's `timeout_ms`, after which it claims over
    /// HTTP instead) claims nothing and answers 503, so a task is never
    /// claimed twice.
    pub async fn claim(&self, body: Value, deadline: Option<Instant>) -> Result<Reply, ApiError> {
        let wanted = self.wanted(body)?;
        let caller = self.caller.clone();
        let dispatched = self
            .db
            .write(move |tx| -> Result<_, ApiError> {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(None);
                }
                Ok(Some(dispatch_batch(tx, &caller, &wanted)?))
            })
            .await?
            .ok_or_else(|| {
                log::warn!("a claim over a daemon socket waited past its time budget");
                ApiError::Store(crate::store::Error::Busy)
            })?;
        let tasks = dispatched
            .into_iter()
            .map(|d| announce(self.events, d))
            .collect();
        Ok(Reply { tasks })
    }

    /// The request checked as the HTTP route checks it; the runtimes it
    /// names are narrowed to the socket's.
    fn wanted(&self, body: Value) -> Result<Wanted, ApiError> {
        let body = if body.is_null() { json!({}) } else { body };
        let request: BatchClaim = serde_json::from_value(body)
            .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?;
        let mut wanted = request.checked(self.caller)?;
        wanted.runtimes.retain(|id| self.runtimes.contains(id));
        Ok(wanted)
    }
}
