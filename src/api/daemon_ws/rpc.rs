//! `tasks.claim` over the daemon socket: the batch claim of
//! `POST /api/daemon/tasks/claim` with the same body, rules and reply,
//! among the runtimes the socket was opened for. Each claim is one write
//! transaction that re-checks the caller's reach, dispatches and mints
//! every claimed task's `auth_token`.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::access::acts_for_runtime;
use crate::api::claims::{announce, dispatch_next, ClaimedTask, MAX_BATCH_TASKS};
use crate::api::daemon::MAX_RUNTIMES_PER_REGISTRATION;
use crate::auth::Caller;
use crate::db::{runtimes, Db};
use crate::domain::Id;
use crate::error::ApiError;
use crate::events::EventBus;

/// The method name the daemon sends.
pub const CLAIM: &str = "tasks.claim";

/// One request on one socket.
pub(super) struct Call<'a> {
    pub db: &'a Db,
    pub events: &'a EventBus,
    pub caller: &'a Caller,
    /// The socket's runtimes.
    pub runtimes: &'a [Id],
}

/// The reply body, as the HTTP route's: `{"tasks": [...]}`.
#[derive(Serialize)]
pub(super) struct Reply {
    tasks: Vec<ClaimedTask>,
}

#[derive(Deserialize)]
struct ClaimRequest {
    daemon_id: Option<String>,
    #[serde(default)]
    runtime_ids: Vec<String>,
    #[serde(default)]
    max_tasks: i64,
}

/// What a valid request asks for.
struct Wanted {
    daemon_id: String,
    max_tasks: i64,
    runtimes: Vec<Id>,
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
            .write(move |tx| {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(None);
                }
                let runtimes = claimable(tx, &caller, &wanted.daemon_id, &wanted.runtimes)?;
                let mut out = Vec::new();
                while (out.len() as i64) < wanted.max_tasks && !runtimes.is_empty() {
                    match dispatch_next(tx, &runtimes)? {
                        Some(d) => out.push(d),
                        None => break,
                    }
                }
                Ok(Some(out))
            })
            .await?
            .ok_or_else(|| {
                log::warn!("a claim over a daemon socket waited past its time budget");
                ApiError::Busy
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
        let request: ClaimRequest = serde_json::from_value(body)
            .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?;
        let daemon_id = crate::api::short_text(request.daemon_id.as_deref(), "daemon_id")?;
        if daemon_id.is_empty() {
            return Err(ApiError::bad_request("daemon_id is required"));
        }
        if let Caller::Daemon(daemon) = self.caller {
            if daemon.daemon_id != daemon_id {
                return Err(ApiError::forbidden("daemon_id does not match token"));
            }
        }
        if request.max_tasks < 0 {
            return Err(ApiError::bad_request("max_tasks must not be negative"));
        }
        if request.runtime_ids.len() > MAX_RUNTIMES_PER_REGISTRATION {
            return Err(ApiError::bad_request(format!(
                "runtime_ids lists at most {MAX_RUNTIMES_PER_REGISTRATION} runtimes"
            )));
        }
        let named: Vec<Id> = request
            .runtime_ids
            .iter()
            .filter_map(|raw| raw.trim().parse().ok())
            .collect();
        Ok(Wanted {
            daemon_id,
            max_tasks: request.max_tasks.min(MAX_BATCH_TASKS),
            runtimes: self
                .runtimes
                .iter()
                .copied()
                .filter(|id| named.contains(id))
                .collect(),
        })
    }
}

/// The runtimes of `ids` that belong to `daemon_id` and that the caller
/// still acts for, in the claim's own transaction; the rest are skipped (a
/// daemon may still name a runtime deleted a moment ago).
fn claimable(
    tx: &rusqlite::Connection,
    caller: &Caller,
    daemon_id: &str,
    ids: &[Id],
) -> Result<Vec<Id>, ApiError> {
    let mut out = Vec::new();
    for id in ids {
        let Some(runtime) = runtimes::get(tx, *id)? else {
            continue;
        };
        if runtime.daemon_id.as_deref() == Some(daemon_id)
            && acts_for_runtime(tx, caller, &runtime)?
        {
            out.push(*id);
        }
    }
    Ok(out)
}
