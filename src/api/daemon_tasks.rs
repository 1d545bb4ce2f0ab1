//! What the current daemon says about its tasks besides their transitions:
//! orphans it left behind when it stopped, the lease it holds while it
//! prepares a claimed task, the agent's session, and its acknowledgement of
//! a cancellation. Every route is reachable only by whoever acts for the
//! runtime (see `access::require_daemon_runtime` / `require_daemon_task`).

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::access::{require_daemon_runtime, require_daemon_task};
use crate::auth::Caller;
use crate::domain::{RuntimeId, TaskId, TaskStatus, Timestamp};
use crate::error::ApiError;
use crate::events::EventBus;
use crate::failures::Failures;
use crate::store::sweeps::BATCH;
use crate::store::tasks::{self, ActiveTask, CancelAck};
use crate::store::Store;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/daemon/runtimes/{id}/recover-orphans",
        web::post().to(recover_orphans),
    )
    .route(
        "/daemon/runtimes/{id}/tasks/{task_id}/prepare-lease",
        web::post().to(prepare_lease),
    )
    .route("/daemon/tasks/{id}/session", web::post().to(pin_session))
    .route("/daemon/tasks/{id}/cancel-ack", web::post().to(cancel_ack));
}

#[derive(Deserialize, Default)]
struct RecoverRequest {
    active_task_ids: Option<Vec<String>>,
}

#[derive(Serialize)]
struct Recovered {
    orphaned: usize,
    /// How many of them were queued again (see `failures`).
    retried: usize,
    /// The runtime's dispatched and running tasks left after the recovery:
    /// the ones the daemon said it still runs.
    active_tasks: Vec<ActiveTask>,
}

/// The task ids a daemon says it still runs (`active_task_ids` of
/// `recover-orphans` and of a registration): at most
/// [`tasks::MAX_ACTIVE_LISTED`], each a task id.
pub(crate) fn active_task_ids(given: Option<&[String]>) -> Result<Option<Vec<TaskId>>, ApiError> {
    let Some(given) = given else {
        return Ok(None);
    };
    if given.len() as i64 > tasks::MAX_ACTIVE_LISTED {
        return Err(ApiError::bad_request(format!(
            "active_task_ids carries at most {} ids",
            tasks::MAX_ACTIVE_LISTED
        )));
    }
    given
        .iter()
        .enumerate()
        .map(|(i, id)| {
            id.trim()
                .parse()
                .map_err(|e| ApiError::bad_request(format!("invalid active_task_ids[{i}]: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A daemon calls this as it starts, for each runtime it registered: the
/// tasks dispatched to or running on the runtime were its previous
/// process's, and nothing runs them any more. They fail at once with
/// `daemon restarted while task was in flight` (failure_reason
/// `runtime_recovery`) instead of waiting for the sweeper's timeouts, and
/// are retried as the agent's `max_attempts` allows. A daemon that kept
/// some of them running lists them in `active_task_ids`: those stay as
/// they are (and so do tasks dispatched in the last
/// [`tasks::RECONCILE_GRACE_SECS`], whose claim it may not have heard of
/// yet), and the reply's `active_tasks` says which tasks are still its
/// own. Batches of [`BATCH`], each in its own short transaction.
async fn recover_orphans(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: Caller,
    path: web::Path<RuntimeId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let runtime = path.into_inner();
    let request = super::optional_json::<RecoverRequest>(&body)?.unwrap_or_default();
    let listed = active_task_ids(request.active_task_ids.as_deref())?;
    // a daemon that lists what it runs keeps what it claimed a moment ago
    let dispatched_before = listed.as_ref().map(|_| tasks::reconcile_cutoff());
    let keep = std::sync::Arc::new(listed.unwrap_or_default());
    let (mut orphaned, mut retried) = (0, 0);
    loop {
        let (caller, keep) = (caller.clone(), keep.clone());
        let (batch, active_tasks) = db
            .write(move |tx| -> Result<_, ApiError> {
                require_daemon_runtime(tx, &caller, runtime)?;
                let failed = tasks::fail_orphans(tx, runtime, &keep, dispatched_before)?;
                // the last batch reads what is left, in its transaction
                let active = if (failed.len() as i64) < BATCH {
                    Some(tasks::active_on(tx, runtime)?)
                } else {
                    None
                };
                Ok((Failures::settle(tx, failed)?, active))
            })
            .await?;
        orphaned += batch.failed.len();
        retried += batch.retries.len();
        batch.publish(&events);
        if let Some(active_tasks) = active_tasks {
            return Ok(HttpResponse::Ok().json(Recovered {
                orphaned,
                retried,
                active_tasks,
            }));
        }
    }
}

/// Keeps a dispatched task of this runtime from timing out while its
/// daemon prepares it: the sweeper leaves it alone until
/// [`tasks::PREPARE_LEASE_SECS`] from now. A task of another runtime is
/// 404; one that is no longer dispatched is a 400 naming its status.
async fn prepare_lease(
    db: web::Data<Store>,
    caller: Caller,
    path: web::Path<(RuntimeId, TaskId)>,
) -> Result<HttpResponse, ApiError> {
    let (runtime, id) = path.into_inner();
    let task = db
        .write(move |tx| -> Result<_, ApiError> {
            require_daemon_runtime(tx, &caller, runtime)?;
            let task = require_daemon_task(tx, &caller, id)?;
            refuse_lease(&task, runtime)?;
            let until = Timestamp::now() + chrono::Duration::seconds(tasks::PREPARE_LEASE_SECS);
            match tasks::set_prepare_lease(tx, id, runtime, until)? {
                Some(task) => Ok(task),
                // a concurrent change won: say what the task is now
                None => {
                    let now = tasks::get(tx, id)?.unwrap_or(task);
                    refuse_lease(&now, runtime)?;
                    Err(super::tasks::changed_meanwhile())
                }
            }
        })
        .await?;
    Ok(HttpResponse::Ok().json(task))
}

/// Why the prepare lease of `task` cannot be extended by `runtime`'s
/// daemon, if it cannot: 404 for another runtime's task, 400 naming the
/// status of one that is no longer dispatched.
fn refuse_lease(task: &tasks::Task, runtime: RuntimeId) -> Result<(), ApiError> {
    if task.runtime_id != Some(runtime) {
        return Err(ApiError::not_found("task not found"));
    }
    if task.status != TaskStatus::Dispatched {
        return Err(ApiError::bad_request(format!(
            "cannot extend the prepare lease of task: it is {}",
            task.status
        )));
    }
    Ok(())
}

/// Longest session id a daemon may pin: an agent CLI's id, not a text.
const MAX_SESSION_ID_BYTES: usize = super::MAX_SHORT_TEXT;
/// Longest path a daemon may report (PATH_MAX on Linux).
const MAX_PATH_BYTES: usize = 4096;
/// Longest branch name a cancellation ack may carry.
const MAX_BRANCH_BYTES: usize = 1024;

/// An optional text field: trimmed, NUL refused, at most `max` bytes;
/// empty means absent.
fn optional_text(value: Option<&str>, field: &str, max: usize) -> Result<Option<String>, ApiError> {
    let value = super::text(value, field)?;
    super::at_most(&value, field, max)?;
    Ok(Some(value).filter(|v| !v.is_empty()))
}

#[derive(Deserialize)]
struct PinSession {
    session_id: Option<String>,
    work_dir: Option<String>,
}

/// Records the agent's session id and work directory as soon as the daemon
/// knows them, so a daemon that crashes mid-run does not lose them; shown
/// in the task as `session_id` and `work_dir`. Either may be left out (the
/// stored one stays); leaving out both is a 400. Any status: a pin may
/// arrive after the task was cancelled. Answers 204.
async fn pin_session(
    db: web::Data<Store>,
    caller: Caller,
    path: web::Path<TaskId>,
    body: web::Json<PinSession>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let body = body.into_inner();
    let session = optional_text(
        body.session_id.as_deref(),
        "session_id",
        MAX_SESSION_ID_BYTES,
    )?;
    let work_dir = optional_text(body.work_dir.as_deref(), "work_dir", MAX_PATH_BYTES)?;
    db.write(move |tx| -> Result<_, ApiError> {
        require_daemon_task(tx, &caller, id)?;
        if session.is_none() && work_dir.is_none() {
            return Err(ApiError::bad_request("session_id or work_dir is required"));
        }
        Ok(tasks::pin_session(
            tx,
            id,
            session.as_deref(),
            work_dir.as_deref(),
        )?)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, Default)]
struct CancelAckRequest {
    branch_name: Option<String>,
    durable_work_dir: Option<String>,
    error_message: Option<String>,
    failure_reason: Option<String>,
}

impl CancelAckRequest {
    fn parse(self) -> Result<CancelAck, ApiError> {
        Ok(CancelAck {
            branch_name: optional_text(
                self.branch_name.as_deref(),
                "branch_name",
                MAX_BRANCH_BYTES,
            )?,
            durable_work_dir: optional_text(
                self.durable_work_dir.as_deref(),
                "durable_work_dir",
                MAX_PATH_BYTES,
            )?,
            // like a failure's error: kept cut, never refused
            error_message: optional_text(
                self.error_message.as_deref(),
                "error_message",
                usize::MAX,
            )?
            .map(crate::probes::clip),
            failure_reason: optional_text(
                self.failure_reason.as_deref(),
                "failure_reason",
                super::MAX_SHORT_TEXT,
            )?,
        })
    }
}

/// The daemon saw a task end and has stopped running it; it sends this for
/// any end it observes, with where the work of a cancelled run went
/// (`branch_name`, `durable_work_dir`) or why it could not be kept
/// (`error_message`, `failure_reason`). On a cancelled task the ack and
/// those fields are recorded (`cancel_acked_at`, `branch_name`,
/// `durable_work_dir`, `error`, `failure_reason`), never overwriting what
/// is already there, so replays are harmless; on any other task it changes
/// nothing. Answers `{"status":"ok"}` either way. The body may be empty.
async fn cancel_ack(
    db: web::Data<Store>,
    caller: Caller,
    path: web::Path<TaskId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let ack = super::optional_json::<CancelAckRequest>(&body)?
        .unwrap_or_default()
        .parse()?;
    db.write(move |tx| -> Result<_, ApiError> {
        require_daemon_task(tx, &caller, id)?;
        tasks::record_cancel_ack(tx, id, &ack, Timestamp::now())?;
        Ok(())
    })
    .await?;
    Ok(super::ok())
}
