//! The task queue as daemons see it (claim, pending, status, start,
//! progress, complete, fail) and the user's cancel; messages are in
//! `transcripts`.
//!
//! Legal transitions: queued → dispatched (claim) → running (start) →
//! completed (complete); dispatched|running → failed (fail);
//! queued|dispatched|running → cancelled (cancel). Anything else is a 400
//! naming the task's current status.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::{require_daemon_runtime, require_daemon_task, require_task_canceller};
use crate::auth::{AuthUser, Caller};
use crate::daemon_hub::DaemonHub;
use crate::domain::{RuntimeId, TaskId, TaskStatus, Timestamp};
use crate::error::ApiError;
use crate::events::{Audience, EventBus, MAX_RELAYED_BYTES};
use crate::pricing::PriceBook;
use crate::store::tasks::{self, Task, Transition};
use crate::store::Conn;
use crate::store::{agents, budgets, Store};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/tasks/{id}/cancel", web::post().to(cancel))
        .route(
            "/daemon/runtimes/{id}/tasks/pending",
            web::get().to(pending),
        )
        .route("/daemon/tasks/{id}/status", web::get().to(status))
        .route("/daemon/tasks/{id}/start", web::post().to(start))
        .route("/daemon/tasks/{id}/progress", web::post().to(progress))
        .route("/daemon/tasks/{id}/complete", web::post().to(complete))
        .route("/daemon/tasks/{id}/fail", web::post().to(fail))
        .route("/daemon/tasks/{id}/usage", web::post().to(report_usage));
}

fn event_of(transition: Transition) -> &'static str {
    match transition {
        Transition::Start => "task:started",
        Transition::Complete => "task:completed",
        Transition::Fail => "task:failed",
        Transition::Cancel => "task:cancelled",
    }
}

/// What a transition records besides the new status (see
/// [`tasks::Outcome`]).
#[derive(Default)]
struct Reported {
    result: Option<String>,
    error: Option<String>,
    reason: Option<String>,
}

/// Applies a transition inside one write transaction (checked against the
/// task's current status there), reconciles the agent's status and
/// publishes the events once committed.
async fn transition(
    db: &Store,
    events: &EventBus,
    task: TaskId,
    transition: Transition,
    authorize: impl FnOnce(&Conn<'_>, TaskId) -> Result<Task, ApiError> + Send + 'static,
    reported: Reported,
) -> Result<Task, ApiError> {
    let changed = db
        .write(move |tx| -> Result<_, ApiError> {
            let current = authorize(tx, task)?;
            if repeats(transition, &current) {
                // the same outcome reported again (a reply was lost): it
                // already happened, nothing changes
                return Ok(Err(current));
            }
            refuse_illegal(transition, &current)?;
            let outcome = tasks::Outcome {
                result: reported.result.as_deref(),
                error: reported.error.as_deref(),
                reason: reported.reason.as_deref(),
            };
            let Some(task) = tasks::apply(tx, task, transition, &outcome)? else {
                // a concurrent change won: say what the task is now
                let now = tasks::get(tx, task)?.unwrap_or(current);
                refuse_illegal(transition, &now)?;
                return Err(changed_meanwhile());
            };
            let agent_status = match task.agent_id {
                Some(agent) => agents::reconcile_status(tx, agent)?,
                None => None,
            };
            quota_failure(tx, &task)?;
            let audience = audience_of(tx, &task)?;
            Ok(Ok((task, agent_status, audience)))
        })
        .await?;
    let (task, agent_status, audience) = match changed {
        Ok(changed) => changed,
        Err(unchanged) => return Ok(unchanged),
    };
    match transition {
        Transition::Fail | Transition::Cancel => events.task_ended(
            event_of(transition),
            audience,
            task.workspace_id,
            task.id,
            task.agent_id,
            task.failure_reason.as_deref(),
        ),
        Transition::Start | Transition::Complete => events.task(
            event_of(transition),
            audience,
            task.workspace_id,
            task.id,
            task.agent_id,
        ),
    }
    if let (Some(agent), Some(status)) = (task.agent_id, agent_status) {
        events.agent_status(audience, task.workspace_id, agent, status);
    }
    Ok(task)
}

/// A task that just failed for a provider's quota or rate limit on its
/// agent's own runtime opens the agent's fallback runtimes for
/// `fallback_after_secs` (see [`agents::FALLBACK_REASONS`]). A failure on
/// a fallback runtime says nothing about the agent's own.
fn quota_failure(tx: &Conn<'_>, task: &Task) -> Result<(), ApiError> {
    let limited = task.status == TaskStatus::Failed
        && task
            .failure_reason
            .as_deref()
            .is_some_and(|r| agents::FALLBACK_REASONS.contains(&r));
    let Some(agent) = task.agent_id.filter(|_| limited) else {
        return Ok(());
    };
    let on_its_own = agents::get(tx, agent)?
        .is_some_and(|a| a.runtime_id.is_some() && a.runtime_id == task.runtime_id);
    if on_its_own {
        agents::mark_quota_failed(tx, agent, Timestamp::now())?;
    }
    Ok(())
}

/// 409 for a conditional write that found its row changed back and forth
/// by concurrent requests since it was read.
pub(super) fn changed_meanwhile() -> ApiError {
    ApiError::conflict("the task changed while the request ran; retry")
}

/// Whether `transition` already happened to `task`: a daemon that lost
/// the reply to `start`, `complete` or `fail` sends it again, and gets the
/// task as it is (200) instead of a 400. (A cancel of a cancelled task is
/// still a 400: people see the state they act on.)
fn repeats(transition: Transition, task: &Task) -> bool {
    transition != Transition::Cancel && task.status == transition.to_state()
}

/// 400 naming the task's status unless `transition` may leave it.
fn refuse_illegal(transition: Transition, task: &Task) -> Result<(), ApiError> {
    if transition.from_states().contains(&task.status) {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "cannot {} task: it is {}",
        transition.verb(),
        task.status
    )))
}

/// Who may read events about `task`: its agent's audience; a task whose
/// agent is gone is shown to owners/admins only.
pub(super) fn audience_of(conn: &Conn<'_>, task: &Task) -> Result<Audience, ApiError> {
    let agent = match task.agent_id {
        Some(agent) => agents::get(conn, agent)?,
        None => None,
    };
    Ok(agent
        .as_ref()
        .map_or(Audience::MANAGERS, Audience::of_agent))
}

/// Whoever queued the task, the agent's or runtime's owner, or a
/// workspace owner/admin cancels it (see `access::require_task_canceller`).
async fn cancel(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: AuthUser,
    path: web::Path<TaskId>,
) -> Result<HttpResponse, ApiError> {
    let authorize =
        move |conn: &Conn<'_>, id: TaskId| require_task_canceller(conn, caller.user_id, id);
    let task = transition(
        &db,
        &events,
        path.into_inner(),
        Transition::Cancel,
        authorize,
        Reported {
            reason: Some(tasks::reasons::CANCELLED_BY_USER.to_string()),
            ..Reported::default()
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(task))
}

/// The head of the runtime's queue, at most [`tasks::PENDING_LIMIT`] rows in
/// claim order; a daemon sees the rest as it claims.
async fn pending(
    db: web::Data<Store>,
    caller: Caller,
    path: web::Path<RuntimeId>,
) -> Result<HttpResponse, ApiError> {
    let runtime = path.into_inner();
    let rows = db
        .read(move |conn| -> Result<_, ApiError> {
            require_daemon_runtime(conn, &caller, runtime)?;
            let mut rows = tasks::pending_for_runtime(conn, runtime)?;
            budgets::mark_blocked(conn, &mut rows)?;
            Ok(rows)
        })
        .await?;
    Ok(HttpResponse::Ok().json(rows))
}

async fn status(
    db: web::Data<Store>,
    caller: Caller,
    path: web::Path<TaskId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let task = db
        .read(move |conn| require_daemon_task(conn, &caller, id))
        .await?;
    Ok(HttpResponse::Ok().json(json!({"id": task.id, "status": task.status})))
}

fn daemon_authorize(
    caller: Caller,
) -> impl FnOnce(&Conn<'_>, TaskId) -> Result<Task, ApiError> + Send + 'static {
    move |conn, id| require_daemon_task(conn, &caller, id)
}

async fn start(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: Caller,
    path: web::Path<TaskId>,
) -> Result<HttpResponse, ApiError> {
    let task = transition(
        &db,
        &events,
        path.into_inner(),
        Transition::Start,
        daemon_authorize(caller),
        Reported::default(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(task))
}

/// Largest result a daemon may report on completion: it is stored with the
/// task and comes back in every listing page.
pub const MAX_RESULT_BYTES: usize = 256 * 1024;

/// Whatever the daemon reports on completion (an object of at most
/// [`MAX_RESULT_BYTES`]) is kept as the task's result.
async fn complete(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: Caller,
    path: web::Path<TaskId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if body.len() > MAX_RESULT_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "result too large (limit {MAX_RESULT_BYTES} bytes)"
        )));
    }
    let result = match super::optional_json::<Value>(&body)? {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => {
            let result = Value::Object(map);
            super::json_without_nul(&result, "result")?;
            Some(result.to_string())
        }
        Some(_) => return Err(ApiError::bad_request("the result must be a JSON object")),
    };
    let task = transition(
        &db,
        &events,
        path.into_inner(),
        Transition::Complete,
        daemon_authorize(caller),
        Reported {
            result,
            ..Reported::default()
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(task))
}

#[derive(Deserialize)]
struct FailRequest {
    error: Option<String>,
    failure_reason: Option<String>,
}

/// `{error?, failure_reason?}`. An error longer than 8 KiB is kept cut (it
/// is for people to read), never refused, so a failing task always ends
/// failed; `failure_reason` is the daemon's code for it (lower-case words
/// and dots, such as `agent_error.provider_quota_limit`; 400 otherwise),
/// `agent_error` when it sends none.
async fn fail(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: Caller,
    path: web::Path<TaskId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body = super::optional_json::<FailRequest>(&body)?;
    let (error, reason) = body.map_or((None, None), |b| (b.error, b.failure_reason));
    let error = error
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .map(crate::probes::clip)
        .unwrap_or_else(|| "task failed".to_string());
    let reason = match reason.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(code) if tasks::reasons::well_formed(code) => Some(code.to_string()),
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "failure_reason must be lower-case words joined by _ and . (at most {} bytes)",
                tasks::reasons::MAX_BYTES
            )))
        }
    };
    let task = transition(
        &db,
        &events,
        path.into_inner(),
        Transition::Fail,
        daemon_authorize(caller),
        Reported {
            result: None,
            error: Some(error),
            reason: Some(reason.unwrap_or_else(|| tasks::reasons::AGENT_ERROR.to_string())),
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(task))
}

/// Progress is relayed to the live event streams of those who may read
/// the task's agent (`task:progress`); it is not stored (transcripts are:
/// see `transcripts`). A body over [`MAX_RELAYED_BYTES`] is refused (413),
/// so no daemon can make every stream carry megabytes. A finished task
/// still takes it: a daemon's last flush may arrive just after its
/// `complete`.
async fn progress(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: Caller,
    path: web::Path<TaskId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    if body.len() > MAX_RELAYED_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "task:progress body too large (limit {MAX_RELAYED_BYTES} bytes)"
        )));
    }
    let body = super::json_object(&body)?;
    check_progress(&body).map_err(ApiError::bad_request)?;
    let (task, audience) = db
        .read(move |conn| -> Result<_, ApiError> {
            let task = require_daemon_task(conn, &caller, id)?;
            let audience = audience_of(conn, &task)?;
            Ok((task, audience))
        })
        .await?;
    if task.status == TaskStatus::Queued {
        return Err(ApiError::bad_request("cannot report on task: it is queued"));
    }
    events.publish_to(
        "task:progress",
        task.workspace_id,
        audience,
        json!({"task_id": task.id, "agent_id": task.agent_id, "data": body}),
    );
    Ok(super::ok())
}

/// The fields a daemon sends have the types it sends them with:
/// `{summary, step, total}`. Other fields are relayed as they are.
fn check_progress(body: &Value) -> Result<(), String> {
    // (field, whether a value has its type, that type in words)
    type Typed = (&'static str, fn(&Value) -> bool, &'static str);
    let typed: &[Typed] = &[
        ("summary", Value::is_string, "a string"),
        ("step", Value::is_i64, "an integer"),
        ("total", Value::is_i64, "an integer"),
    ];
    for (field, is, what) in typed {
        if body.get(field).is_some_and(|v| !v.is_null() && !is(v)) {
            return Err(format!("{field} must be {what}"));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct TaskUsage {
    usage: Vec<Value>,
}

/// `{usage: [{provider, model, input_tokens, …, cost_usd_ticks?}]}`: the
/// task's running totals per (provider, model), replacing what was stored,
/// with the workspace and runtime rollups, in one transaction. Any invalid entry refuses the
/// whole report (400 naming it), so a daemon never mistakes a partial
/// write for a full one.
async fn report_usage(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    hub: web::Data<DaemonHub>,
    caller: Caller,
    path: web::Path<TaskId>,
    body: web::Json<TaskUsage>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let usage = body.into_inner().usage;
    if usage.len() > super::usage::MAX_TASK_REPORT_ENTRIES {
        return Err(ApiError::bad_request(format!(
            "a report carries at most {} entries",
            super::usage::MAX_TASK_REPORT_ENTRIES
        )));
    }
    let entries = usage
        .iter()
        .enumerate()
        .map(|(i, v)| {
            super::usage::parse_entry(v)
                .and_then(|entry| super::usage::parse_cost(v).map(|cost| (entry, cost)))
                .map_err(|e| ApiError::bad_request(format!("usage[{i}]: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let charged = db
        .write(move |tx| -> Result<_, ApiError> {
            let task = require_daemon_task(tx, &caller, id)?;
            let at = Timestamp::now();
            budgets::hold_for_spending(tx, task.workspace_id)?;
            // the change of cost is priced only for a workspace with budgets
            let prices = if budgets::any(tx, task.workspace_id)? {
                Some(PriceBook::new(crate::store::pricing::overrides(
                    tx,
                    task.workspace_id,
                )?))
            } else {
                None
            };
            let mut ticks: i64 = 0;
            for (entry, cost) in &entries {
                let change = crate::store::usage::upsert_task_usage_with_cost(
                    tx,
                    id,
                    task.workspace_id,
                    entry,
                    *cost,
                    at,
                )?;
                if let Some(prices) = &prices {
                    // what a report adds; one that lowers a total takes
                    // nothing back
                    let added = super::budgets::cost_change(prices, entry, &change).max(0);
                    ticks = ticks.saturating_add(added);
                }
            }
            if prices.is_none() || ticks == 0 {
                return Ok(None);
            }
            let charge = budgets::Charge {
                workspace: task.workspace_id,
                agent: task.agent_id,
                member: task.created_by,
                ticks,
            };
            budgets::lock_charged(tx, &charge)?;
            let periods = super::budgets::periods_of(tx, task.workspace_id)?;
            let settled = budgets::charge(tx, &charge, &periods)?;
            let announced =
                super::budgets::Announcement::of(tx, task.workspace_id, settled, periods)?;
            Ok(Some(announced))
        })
        .await?;
    if let Some(announced) = charged {
        announced.publish(&events, &hub);
    }
    Ok(super::ok())
}
