//! Agents: list, create, read, edit, archive, restore; and the user side of
//! their task queue (queue work, list it).

use crate::store::Conn;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::page::{self, Page};
use super::{at_most, required, text};
use crate::access::{member_role, require_agent, require_agent_editor, require_bindable};
use crate::auth::{AuthUser, Caller, WorkspaceAccess};
use crate::daemon_hub::DaemonHub;
use crate::domain::{AgentId, AgentStatus, RuntimeId, RuntimeStatus, Visibility, WorkspaceId};
use crate::error::ApiError;
use crate::events::{Audience, EventBus};
use crate::store::agents::{self, Agent, AgentFields};
use crate::store::{runtimes, tasks, Store};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/agents", web::get().to(list))
        .route("/agents", web::post().to(create))
        .route("/agents/{id}", web::get().to(get))
        .route("/agents/{id}", web::put().to(update))
        .route("/agents/{id}/archive", web::post().to(archive))
        .route("/agents/{id}/restore", web::post().to(restore))
        .route("/agents/{id}/tasks", web::get().to(list_tasks))
        .route("/agents/{id}/tasks", web::post().to(create_task))
        .route("/tasks/{id}/rerun", web::post().to(rerun));
}

#[derive(Deserialize)]
struct ListQuery {
    include_archived: Option<String>,
}

/// `GET /api/agents`: the agents the caller may see, oldest first, one
/// page at a time (see [`Page`]).
async fn list(
    db: web::Data<Store>,
    access: WorkspaceAccess,
    query: web::Query<ListQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let include_archived = match query.include_archived.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "include_archived must be true or false",
            ))
        }
    };
    let filter = agents::Filter {
        workspace: access.workspace_id,
        viewer: access.user_id,
        see_private: access.role.is_manager(),
        include_archived,
    };
    let page = Page::of(&req)?;
    let fetch = page.clone();
    let rows = db
        .read(move |conn| agents::list(conn, filter, fetch.after(), fetch.fetch()))
        .await?;
    Ok(page::reply(&req, &page, rows, |a| (a.created_at, a.id)))
}

/// The body of create and update: every field optional, validated against
/// the agent's current values (or the defaults) by [`AgentRequest::merge`].
#[derive(Deserialize)]
struct AgentRequest {
    name: Option<String>,
    description: Option<String>,
    instructions: Option<String>,
    avatar_url: Option<String>,
    runtime_id: Option<String>,
    runtime_config: Option<Value>,
    visibility: Option<String>,
    status: Option<String>,
    max_concurrent_tasks: Option<i64>,
    max_attempts: Option<i64>,
    fallback_runtime_ids: Option<Value>,
    fallback_after_secs: Option<i64>,
}

fn agent_gone() -> ApiError {
    ApiError::not_found("agent not found")
}

/// What a create or an edit asks of an agent: its fields, and its fallback
/// runtimes when given (`None`: as they are).
struct AgentChange {
    fields: AgentFields,
    fallbacks: Option<Vec<RuntimeId>>,
}

/// The fallback runtimes as given: a list of distinct runtime ids of the
/// workspace, at most [`agents::MAX_FALLBACKS`], none the agent's own.
fn fallback_ids(
    conn: &Conn<'_>,
    given: Value,
    workspace: WorkspaceId,
    primary: Option<RuntimeId>,
) -> Result<Vec<RuntimeId>, ApiError> {
    let listed = match given {
        Value::Null => return Ok(Vec::new()),
        Value::Array(listed) => listed,
        _ => {
            return Err(ApiError::bad_request(
                "fallback_runtime_ids must be a list of runtime ids",
            ))
        }
    };
    if listed.len() > agents::MAX_FALLBACKS {
        return Err(ApiError::bad_request(format!(
            "fallback_runtime_ids lists at most {} runtimes",
            agents::MAX_FALLBACKS
        )));
    }
    let mut ids = Vec::with_capacity(listed.len());
    for value in &listed {
        let id: RuntimeId = value
            .as_str()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                ApiError::bad_request("fallback_runtime_ids holds an invalid runtime id")
            })?;
        if Some(id) == primary {
            return Err(ApiError::bad_request(
                "fallback_runtime_ids must not name the agent's own runtime",
            ));
        }
        if ids.contains(&id) {
            return Err(ApiError::bad_request(
                "fallback_runtime_ids names a runtime twice",
            ));
        }
        runtimes::get(conn, id)?
            .filter(|r| r.workspace_id == workspace)
            .ok_or_else(|| {
                ApiError::bad_request("fallback_runtime_ids holds an invalid runtime id")
            })?;
        ids.push(id);
    }
    Ok(ids)
}

/// Rule 1 for fallback runtimes: the caller binds them as they would bind
/// the agent to them, and the agent's owner must be allowed to as well,
/// since it is their agent whose work the machine takes.
fn require_fallbacks_bindable(
    conn: &Conn<'_>,
    fallbacks: &[RuntimeId],
    workspace: WorkspaceId,
    caller: (crate::domain::UserId, crate::domain::Role),
    owner: Option<crate::domain::UserId>,
) -> Result<(), ApiError> {
    if fallbacks.is_empty() {
        return Ok(());
    }
    let owner_role = match owner {
        Some(owner) => {
            crate::store::workspaces::role_of(conn, workspace, owner)?.map(|r| (owner, r))
        }
        None => None,
    };
    let Some((owner, owner_role)) = owner_role else {
        return Err(ApiError::forbidden(
            "the agent's owner is not a member of the workspace: it cannot have fallback runtimes",
        ));
    };
    for id in fallbacks {
        let runtime = runtimes::get(conn, *id)?.ok_or_else(|| {
            ApiError::bad_request("fallback_runtime_ids holds an invalid runtime id")
        })?;
        require_bindable(&runtime, caller.0, caller.1)?;
        require_bindable(&runtime, owner, owner_role).map_err(|_| {
            ApiError::forbidden(format!(
                "fallback runtime {id} is not one the agent's owner may bind agents to"
            ))
        })?;
    }
    Ok(())
}

impl AgentRequest {
    /// Applies the request to `current` (None: a new agent) and checks every
    /// value the schema would refuse, so a CHECK never turns into a 500. The
    /// runtime must belong to `workspace`; its mode is copied.
    fn merge(
        self,
        conn: &Conn<'_>,
        workspace: WorkspaceId,
        current: Option<&Agent>,
    ) -> Result<AgentChange, ApiError> {
        let fallback_after_secs = self
            .fallback_after_secs
            .or(current.map(|a| a.fallback_after_secs))
            .unwrap_or(300);
        if !(30..=86_400).contains(&fallback_after_secs) {
            return Err(ApiError::bad_request(
                "fallback_after_secs must be between 30 and 86400",
            ));
        }
        let fallback_given = self.fallback_runtime_ids;
        let name = match (self.name, current) {
            (Some(name), _) => required(Some(&name), "name")?,
            (None, Some(agent)) => agent.name.clone(),
            (None, None) => return Err(ApiError::bad_request("name is required")),
        };
        let runtime_id = match (self.runtime_id, current) {
            (Some(raw), _) => Some(
                raw.trim()
                    .parse::<RuntimeId>()
                    .map_err(|_| ApiError::bad_request("invalid runtime_id"))?,
            ),
            (None, Some(agent)) => agent.runtime_id,
            (None, None) => return Err(ApiError::bad_request("runtime_id is required")),
        };
        // an unbound agent keeps the mode of the runtime it had
        let runtime_mode = match (runtime_id, current) {
            (Some(id), _) => {
                runtimes::get(conn, id)?
                    .filter(|r| r.workspace_id == workspace)
                    .ok_or_else(|| ApiError::bad_request("invalid runtime_id"))?
                    .runtime_mode
            }
            (None, Some(agent)) => agent.runtime_mode,
            (None, None) => return Err(ApiError::bad_request("runtime_id is required")),
        };
        let visibility = match (self.visibility, current) {
            (Some(raw), _) => raw.parse().map_err(ApiError::bad_request)?,
            (None, Some(agent)) => agent.visibility,
            (None, None) => Visibility::Private,
        };
        let status = match (self.status, current) {
            (Some(raw), _) => raw.parse().map_err(ApiError::bad_request)?,
            (None, Some(agent)) => agent.status,
            (None, None) => AgentStatus::Idle,
        };
        let max_concurrent_tasks = self
            .max_concurrent_tasks
            .or(current.map(|a| a.max_concurrent_tasks))
            .unwrap_or(6);
        if !(1..=100).contains(&max_concurrent_tasks) {
            return Err(ApiError::bad_request(
                "max_concurrent_tasks must be between 1 and 100",
            ));
        }
        let max_attempts = self
            .max_attempts
            .or(current.map(|a| a.max_attempts))
            .unwrap_or(2);
        if !(1..=10).contains(&max_attempts) {
            return Err(ApiError::bad_request(
                "max_attempts must be between 1 and 10",
            ));
        }
        let runtime_config = match (self.runtime_config, current) {
            (Some(Value::Object(map)), _) => {
                let config = Value::Object(map);
                super::json_without_nul(&config, "runtime_config")?;
                config
            }
            (Some(Value::Null), _) | (None, None) => json!({}),
            (Some(_), _) => return Err(ApiError::bad_request("runtime_config must be an object")),
            (None, Some(agent)) => agent.runtime_config.clone(),
        };
        let description = edited(
            self.description,
            current.map(|a| a.description.as_str()),
            "description",
        )?;
        let instructions = edited(
            self.instructions,
            current.map(|a| a.instructions.as_str()),
            "instructions",
        )?;
        let avatar_url = match self.avatar_url {
            Some(new) => Some(text(Some(&new), "avatar_url")?),
            None => current.and_then(|a| a.avatar_url.clone()),
        };
        let fallbacks = match fallback_given {
            Some(given) => Some(fallback_ids(conn, given, workspace, runtime_id)?),
            // a move onto a fallback runtime takes it off the list
            None => current
                .filter(|a| runtime_id.is_some_and(|r| a.fallback_runtime_ids.contains(&r)))
                .map(|a| {
                    a.fallback_runtime_ids
                        .iter()
                        .copied()
                        .filter(|r| Some(*r) != runtime_id)
                        .collect()
                }),
        };
        Ok(AgentChange {
            fields: AgentFields {
                runtime_id,
                runtime_mode,
                name,
                description,
                instructions,
                avatar_url,
                runtime_config: runtime_config.to_string(),
                visibility,
                status,
                max_concurrent_tasks,
                max_attempts,
                fallback_after_secs,
            },
            fallbacks,
        })
    }
}

/// A text field of a create or edit: the new value (checked by [`text`])
/// or the current one.
fn edited(new: Option<String>, current: Option<&str>, field: &str) -> Result<String, ApiError> {
    match new {
        Some(new) => text(Some(&new), field),
        None => Ok(current.unwrap_or_default().to_string()),
    }
}

async fn create(
    db: web::Data<Store>,
    access: WorkspaceAccess,
    body: web::Json<AgentRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let agent = db
        .write(move |tx| -> Result<_, ApiError> {
            // the role as of this transaction, not as the extractor read
            // it before: a demotion that committed since counts. Any member
            // creates agents on the runtimes they may bind.
            let role = member_role(tx, access.workspace_id, access.user_id)?;
            let AgentChange { fields, fallbacks } = body.merge(tx, access.workspace_id, None)?;
            let runtime = fields
                .runtime_id
                .map(|id| runtimes::get(tx, id))
                .transpose()?
                .flatten()
                .ok_or_else(|| ApiError::bad_request("invalid runtime_id"))?;
            require_bindable(&runtime, access.user_id, role)?;
            let agent = agents::insert(tx, access.workspace_id, access.user_id, &fields)?;
            match fallbacks.filter(|f| !f.is_empty()) {
                Some(fallbacks) => {
                    require_fallbacks_bindable(
                        tx,
                        &fallbacks,
                        access.workspace_id,
                        (access.user_id, role),
                        Some(access.user_id),
                    )?;
                    agents::set_fallbacks(tx, agent.id, &fallbacks)?;
                    agents::get(tx, agent.id)?.ok_or_else(agent_gone)
                }
                None => Ok(agent),
            }
        })
        .await?;
    Ok(HttpResponse::Created().json(agent))
}

/// A member reads an agent they may see; an agent run by a daemon reads
/// itself with its task token.
async fn get(
    db: web::Data<Store>,
    caller: Caller,
    path: web::Path<AgentId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let agent = db
        .read(move |conn| match caller {
            Caller::User { user_id } => Ok(require_agent(conn, user_id, id)?.0),
            Caller::Task(task) if task.agent_id == Some(id) => {
                agents::get(conn, id)?.ok_or_else(|| ApiError::not_found("agent not found"))
            }
            Caller::Task(_) => Err(ApiError::not_found("agent not found")),
            Caller::Daemon(_) => Err(ApiError::unauthorized(
                "this route needs a personal access token, not a daemon token",
            )),
        })
        .await?;
    Ok(HttpResponse::Ok().json(agent))
}

async fn update(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<AgentId>,
    body: web::Json<AgentRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let body = body.into_inner();
    let agent = db
        .write(move |tx| -> Result<_, ApiError> {
            let (agent, role) = require_agent(tx, caller.user_id, id)?;
            require_agent_editor(&agent, caller.user_id, role)?;
            let AgentChange { fields, fallbacks } =
                body.merge(tx, agent.workspace_id, Some(&agent))?;
            // binding an agent to a runtime makes that machine run its
            // tasks with its owner's login: the runtime's consent rules
            // decide (bindings made before stay as they are)
            match fields.runtime_id {
                Some(id) if fields.runtime_id != agent.runtime_id => {
                    let runtime = runtimes::get(tx, id)?
                        .ok_or_else(|| ApiError::bad_request("invalid runtime_id"))?;
                    require_bindable(&runtime, caller.user_id, role)?;
                }
                _ => {}
            }
            let updated = agents::update(tx, id, &fields)?;
            match fallbacks {
                Some(fallbacks) => {
                    // only runtimes added to the list need consent now
                    let added: Vec<RuntimeId> = fallbacks
                        .iter()
                        .copied()
                        .filter(|r| !agent.fallback_runtime_ids.contains(r))
                        .collect();
                    require_fallbacks_bindable(
                        tx,
                        &added,
                        agent.workspace_id,
                        (caller.user_id, role),
                        agent.owner_id,
                    )?;
                    agents::set_fallbacks(tx, id, &fallbacks)?;
                    agents::get(tx, id)?.ok_or_else(agent_gone)
                }
                None => Ok(updated),
            }
        })
        .await?;
    Ok(HttpResponse::Ok().json(agent))
}

/// Archiving cancels the agent's unfinished tasks in the same transaction.
async fn archive(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: AuthUser,
    path: web::Path<AgentId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let (agent, cancelled, status) = db
        .write(move |tx| -> Result<_, ApiError> {
            agents::lock(tx, id)?;
            let (agent, role) = require_agent(tx, caller.user_id, id)?;
            require_agent_editor(&agent, caller.user_id, role)?;
            if agent.archived_at.is_some() {
                return Err(ApiError::conflict("agent is already archived"));
            }
            let cancelled = tasks::cancel_for_agent(tx, id)?;
            let status = agents::reconcile_status(tx, id)?;
            let agent = agents::set_archived(tx, id, Some(caller.user_id))?
                .ok_or_else(|| ApiError::conflict("agent is already archived"))?;
            Ok((agent, cancelled, status))
        })
        .await?;
    let audience = Audience::of_agent(&agent);
    for task in cancelled {
        events.task(
            "task:cancelled",
            audience,
            agent.workspace_id,
            task,
            Some(agent.id),
        );
    }
    if let Some(status) = status {
        events.agent_status(audience, agent.workspace_id, agent.id, status);
    }
    Ok(HttpResponse::Ok().json(agent))
}

async fn restore(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<AgentId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let agent = db
        .write(move |tx| -> Result<_, ApiError> {
            let (agent, role) = require_agent(tx, caller.user_id, id)?;
            require_agent_editor(&agent, caller.user_id, role)?;
            if agent.archived_at.is_none() {
                return Err(ApiError::conflict("agent is not archived"));
            }
            agents::set_archived(tx, id, None)?
                .ok_or_else(|| ApiError::conflict("agent is not archived"))
        })
        .await?;
    Ok(HttpResponse::Ok().json(agent))
}

/// `GET /api/agents/{id}/tasks`: newest first, one page at a time (see
/// [`Page`]); a page also ends once its tasks' text passes
/// [`tasks::PAGE_BYTES`].
async fn list_tasks(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<AgentId>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let page = Page::of(&req)?;
    let fetch = page.clone();
    let (rows, cut) = db
        .read(move |conn| -> Result<_, ApiError> {
            require_agent(conn, caller.user_id, id)?;
            let (mut rows, cut) = tasks::list_for_agent(conn, id, fetch.after(), fetch.fetch())?;
            crate::store::budgets::mark_blocked(conn, &mut rows)?;
            Ok((rows, cut))
        })
        .await?;
    Ok(page::reply_cut(
        &req,
        &page,
        rows,
        |t| (t.created_at, t.id),
        cut,
    ))
}

#[derive(Deserialize)]
struct CreateTask {
    prompt: Option<String>,
    #[serde(default)]
    priority: i64,
    issue_id: Option<String>,
}

/// Queues work for an agent; any member who can see the agent may. The
/// reply is the task and `runtime_status`, whether the runtime that will
/// run it is online now.
async fn create_task(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    hub: web::Data<DaemonHub>,
    caller: AuthUser,
    path: web::Path<AgentId>,
    body: web::Json<CreateTask>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let body = body.into_inner();
    // every stored byte comes back in each listing page and claim
    let prompt = required(body.prompt.as_deref(), "prompt")?;
    at_most(&prompt, "prompt", tasks::MAX_PROMPT_BYTES)?;
    let issue_id = Some(text(body.issue_id.as_deref(), "issue_id")?).filter(|s| !s.is_empty());
    let issue = issue_id.as_deref().unwrap_or_default();
    at_most(issue, "issue_id", tasks::MAX_ISSUE_ID_BYTES)?;
    let queued = db
        .write(move |tx| -> Result<_, ApiError> {
            let agent = may_queue(tx, caller.user_id, id)?;
            let task = tasks::insert(
                tx,
                &tasks::NewTask {
                    workspace: agent.workspace_id,
                    agent: id,
                    prompt: &prompt,
                    priority: body.priority,
                    issue_id: issue_id.as_deref(),
                    created_by: Some(caller.user_id),
                    attempt: 1,
                    parent: None,
                },
            )?;
            Queued::of(tx, task, &agent)
        })
        .await?;
    Ok(queued.announce(&hub, &events))
}

/// The agent `id`, locked, if `user` may queue work for it now: they can
/// see it, it is not archived, and its queue has room.
fn may_queue(conn: &Conn<'_>, user: crate::domain::UserId, id: AgentId) -> Result<Agent, ApiError> {
    agents::lock(conn, id)?;
    let (agent, _) = require_agent(conn, user, id)?;
    if agent.archived_at.is_some() {
        return Err(ApiError::conflict("agent is archived"));
    }
    if tasks::count_queued(conn, id)? >= tasks::MAX_QUEUED_PER_AGENT {
        return Err(ApiError::conflict(format!(
            "agent already has {} queued tasks",
            tasks::MAX_QUEUED_PER_AGENT
        )));
    }
    Ok(agent)
}

/// A task just queued, with what its announcement needs.
struct Queued {
    task: tasks::Task,
    audience: Audience,
    runtime: RuntimeId,
    runtime_status: RuntimeStatus,
}

impl Queued {
    fn of(conn: &Conn<'_>, mut task: tasks::Task, agent: &Agent) -> Result<Queued, ApiError> {
        // nothing would ever claim it: refused, and the write rolls back
        let runtime = agent.runtime_id.ok_or_else(|| {
            ApiError::conflict("agent has no runtime: bind it to a runtime first")
        })?;
        crate::store::budgets::mark_blocked(conn, std::slice::from_mut(&mut task))?;
        let runtime_status =
            runtimes::get(conn, runtime)?.map_or(RuntimeStatus::Offline, |r| r.status);
        Ok(Queued {
            task,
            audience: Audience::of_agent(agent),
            runtime,
            runtime_status,
        })
    }

    /// Wakes the runtime's daemons, publishes `task:queued`, and replies
    /// 201 with the task and `runtime_status`: queueing for an offline
    /// runtime is allowed (its daemon may be back soon), and said.
    fn announce(self, hub: &DaemonHub, events: &EventBus) -> HttpResponse {
        let task = self.task;
        hub.task_available(self.runtime, task.id);
        events.task(
            "task:queued",
            self.audience,
            task.workspace_id,
            task.id,
            task.agent_id,
        );
        let mut reply = json!(task);
        reply["runtime_status"] = json!(self.runtime_status);
        HttpResponse::Created().json(reply)
    }
}

/// `POST /api/tasks/{id}/rerun`: queues a finished task's work again for
/// its agent, as its next attempt (`parent_task_id` the task). Whoever may
/// read the task and queue work for its agent may; a task that has not
/// finished is a 400, one whose agent is gone a 409.
async fn rerun(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    hub: web::Data<DaemonHub>,
    caller: AuthUser,
    path: web::Path<crate::domain::TaskId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let queued = db
        .write(move |tx| -> Result<_, ApiError> {
            let task = crate::access::require_task_reader(tx, caller.user_id, id)?;
            if !task.status.is_final() {
                return Err(ApiError::bad_request(format!(
                    "cannot rerun task: it is {}",
                    task.status
                )));
            }
            let agent_id = task
                .agent_id
                .ok_or_else(|| ApiError::conflict("the task's agent is gone"))?;
            let agent = may_queue(tx, caller.user_id, agent_id)?;
            let rerun = tasks::requeue(tx, &task, agent_id, Some(caller.user_id))?;
            Queued::of(tx, rerun, &agent)
        })
        .await?;
    Ok(queued.announce(&hub, &events))
}
