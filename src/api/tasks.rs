//! The task queue as daemons see it (claim, pending, status, start,
//! progress, complete, fail, messages) and the user's cancel.
//!
//! Legal transitions: queued → dispatched (claim) → running (start) →
//! completed (complete); dispatched|running → failed (fail);
//! queued|dispatched|running → cancelled (cancel). Anything else is a 400
//! naming the task's current status.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::access::{require_daemon_runtime, require_daemon_task};
use crate::auth::{AuthUser, Caller};
use crate::db::tasks::{self, Task, Transition};
use crate::db::{agents, workspaces, Db};
use crate::domain::Id;
use crate::error::ApiError;
use crate::events::EventBus;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/tasks/{id}/cancel", web::post().to(cancel))
        .route("/daemon/runtimes/{id}/tasks/claim", web::post().to(claim))
        .route(
            "/daemon/runtimes/{id}/tasks/pending",
            web::get().to(pending),
        )
        .route("/daemon/tasks/{id}/status", web::get().to(status))
        .route("/daemon/tasks/{id}/start", web::post().to(start))
        .route("/daemon/tasks/{id}/progress", web::post().to(progress))
        .route("/daemon/tasks/{id}/complete", web::post().to(complete))
        .route("/daemon/tasks/{id}/fail", web::post().to(fail))
        .route("/daemon/tasks/{id}/usage", web::post().to(report_usage))
        .route("/daemon/tasks/{id}/messages", web::post().to(messages));
}

fn event_of(transition: Transition) -> &'static str {
    match transition {
        Transition::Start => "task:started",
        Transition::Complete => "task:completed",
        Transition::Fail => "task:failed",
        Transition::Cancel => "task:cancelled",
    }
}

/// Applies a transition inside one write transaction (checked against the
/// task's current status there), reconciles the agent's status and
/// publishes the events once committed.
async fn transition(
    db: &Db,
    events: &EventBus,
    task: Id,
    transition: Transition,
    authorize: impl FnOnce(&rusqlite::Connection, Id) -> Result<Task, ApiError> + Send + 'static,
    result: Option<String>,
    error: Option<String>,
) -> Result<Task, ApiError> {
    let (task, agent_status) = db
        .write(move |tx| {
            let current = authorize(tx, task)?;
            if !transition.from_states().contains(&current.status.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "cannot {} task: it is {}",
                    transition.verb(),
                    current.status
                )));
            }
            let task = tasks::apply(tx, task, transition, result.as_deref(), error.as_deref())?;
            let agent_status = match task.agent_id {
                Some(agent) => agents::reconcile_status(tx, agent)?,
                None => None,
            };
            Ok((task, agent_status))
        })
        .await?;
    events.task(
        event_of(transition),
        task.workspace_id,
        task.id,
        task.agent_id,
    );
    if let (Some(agent), Some(status)) = (task.agent_id, agent_status) {
        events.agent_status(task.workspace_id, agent, &status);
    }
    Ok(task)
}

/// A member of the task's workspace cancels it.
async fn cancel(
    db: web::Data<Db>,
    events: web::Data<EventBus>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    let authorize = move |conn: &rusqlite::Connection, id: Id| {
        let not_found = || ApiError::not_found("task not found");
        let task = tasks::get(conn, id)?.ok_or_else(not_found)?;
        workspaces::role_of(conn, task.workspace_id, caller.user_id)?.ok_or_else(not_found)?;
        Ok(task)
    };
    let task = transition(
        &db,
        &events,
        path.into_inner(),
        Transition::Cancel,
        authorize,
        None,
        None,
    )
    .await?;
    Ok(HttpResponse::Ok().json(task))
}

/// What a daemon gets from a claim: the task, its prompt, and the agent to
/// run it as.
#[derive(Serialize)]
struct ClaimedTask {
    #[serde(flatten)]
    task: Task,
    agent: Option<ClaimedAgent>,
}

#[derive(Serialize)]
struct ClaimedAgent {
    id: Id,
    name: String,
    instructions: String,
}

#[derive(Serialize)]
struct ClaimResponse {
    task: Option<ClaimedTask>,
}

async fn claim(
    db: web::Data<Db>,
    events: web::Data<EventBus>,
    caller: Caller,
    path: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    let runtime = path.into_inner();
    let claimed = db
        .write(move |tx| {
            require_daemon_runtime(tx, &caller, runtime)?;
            let Some(task) = tasks::claim(tx, runtime)? else {
                return Ok(None);
            };
            let agent = match task.agent_id {
                Some(id) => agents::get(tx, id)?,
                None => None,
            };
            let status = match &agent {
                Some(agent) => agents::reconcile_status(tx, agent.id)?,
                None => None,
            };
            Ok(Some((task, agent, status)))
        })
        .await?;
    let Some((task, agent, status)) = claimed else {
        return Ok(HttpResponse::Ok().json(ClaimResponse { task: None }));
    };
    events.task("task:dispatched", task.workspace_id, task.id, task.agent_id);
    if let (Some(agent), Some(status)) = (&agent, status) {
        events.agent_status(task.workspace_id, agent.id, &status);
    }
    Ok(HttpResponse::Ok().json(ClaimResponse {
        task: Some(ClaimedTask {
            task,
            agent: agent.map(|a| ClaimedAgent {
                id: a.id,
                name: a.name,
                instructions: a.instructions,
            }),
        }),
    }))
}

async fn pending(
    db: web::Data<Db>,
    caller: Caller,
    path: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    let runtime = path.into_inner();
    let rows = db
        .read(move |conn| {
            require_daemon_runtime(conn, &caller, runtime)?;
            Ok(tasks::pending_for_runtime(conn, runtime)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(rows))
}

async fn status(
    db: web::Data<Db>,
    caller: Caller,
    path: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let task = db
        .read(move |conn| require_daemon_task(conn, &caller, id))
        .await?;
    Ok(HttpResponse::Ok().json(json!({"id": task.id, "status": task.status})))
}

fn daemon_authorize(
    caller: Caller,
) -> impl FnOnce(&rusqlite::Connection, Id) -> Result<Task, ApiError> + Send + 'static {
    move |conn, id| require_daemon_task(conn, &caller, id)
}

async fn start(
    db: web::Data<Db>,
    events: web::Data<EventBus>,
    caller: Caller,
    path: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    let task = transition(
        &db,
        &events,
        path.into_inner(),
        Transition::Start,
        daemon_authorize(caller),
        None,
        None,
    )
    .await?;
    Ok(HttpResponse::Ok().json(task))
}

/// Whatever the daemon reports on completion (an object) is kept as the
/// task's result.
async fn complete(
    db: web::Data<Db>,
    events: web::Data<EventBus>,
    caller: Caller,
    path: web::Path<Id>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let result = match super::optional_json::<Value>(&body)? {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(Value::Object(map).to_string()),
        Some(_) => return Err(ApiError::bad_request("the result must be a JSON object")),
    };
    let task = transition(
        &db,
        &events,
        path.into_inner(),
        Transition::Complete,
        daemon_authorize(caller),
        result,
        None,
    )
    .await?;
    Ok(HttpResponse::Ok().json(task))
}

#[derive(Deserialize)]
struct FailRequest {
    error: Option<String>,
}

async fn fail(
    db: web::Data<Db>,
    events: web::Data<EventBus>,
    caller: Caller,
    path: web::Path<Id>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let error = super::optional_json::<FailRequest>(&body)?
        .and_then(|b| b.error)
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "task failed".to_string());
    let task = transition(
        &db,
        &events,
        path.into_inner(),
        Transition::Fail,
        daemon_authorize(caller),
        None,
        Some(error),
    )
    .await?;
    Ok(HttpResponse::Ok().json(task))
}

/// Progress and messages are relayed to the workspace's live event stream
/// (`task:progress`, `task:message`); they are not stored.
async fn relay(
    kind: &'static str,
    db: web::Data<Db>,
    events: web::Data<EventBus>,
    caller: Caller,
    id: Id,
    body: Value,
) -> Result<HttpResponse, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    let task = db
        .read(move |conn| require_daemon_task(conn, &caller, id))
        .await?;
    if !matches!(task.status.as_str(), "dispatched" | "running") {
        return Err(ApiError::bad_request(format!(
            "cannot report on task: it is {}",
            task.status
        )));
    }
    events.publish(
        kind,
        task.workspace_id,
        json!({"task_id": task.id, "agent_id": task.agent_id, "data": body}),
    );
    Ok(super::ok())
}

async fn progress(
    db: web::Data<Db>,
    events: web::Data<EventBus>,
    caller: Caller,
    path: web::Path<Id>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    relay(
        "task:progress",
        db,
        events,
        caller,
        path.into_inner(),
        body.into_inner(),
    )
    .await
}

async fn messages(
    db: web::Data<Db>,
    events: web::Data<EventBus>,
    caller: Caller,
    path: web::Path<Id>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    relay(
        "task:message",
        db,
        events,
        caller,
        path.into_inner(),
        body.into_inner(),
    )
    .await
}

#[derive(Deserialize)]
struct TaskUsage {
    usage: Vec<Value>,
}

/// `{usage: [{provider, model, input_tokens, …}]}`: the task's running
/// totals per (provider, model), replacing what was stored, with the
/// workspace rollups, in one transaction. Any invalid entry refuses the
/// whole report (400 naming it), so a daemon never mistakes a partial
/// write for a full one.
async fn report_usage(
    db: web::Data<Db>,
    caller: Caller,
    path: web::Path<Id>,
    body: web::Json<TaskUsage>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let entries = body
        .into_inner()
        .usage
        .iter()
        .enumerate()
        .map(|(i, v)| {
            super::usage::parse_entry(v)
                .map_err(|e| ApiError::bad_request(format!("usage[{i}]: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    db.write(move |tx| {
        let task = require_daemon_task(tx, &caller, id)?;
        let at = crate::db::now();
        for entry in &entries {
            crate::db::usage::upsert_task_usage(tx, id, task.workspace_id, entry, &at)?;
        }
        Ok(())
    })
    .await?;
    Ok(super::ok())
}
