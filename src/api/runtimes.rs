//! The runtime registry as people see it: list, delete, ping, update.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::page::{self, Page};
use crate::access::{controls_runtime, require_member_runtime};
use crate::auth::{AuthUser, WorkspaceAccess};
use crate::domain::{AgentId, ProbeId, ProbeKind, RuntimeId, Timestamp, Visibility};
use crate::error::ApiError;
use crate::events::{Audience, EventBus, DAEMON_REGISTER};
use crate::probes::{not_found, refused, MAX_TARGET_VERSION};
use crate::store::runtimes::Setting;
use crate::store::{agents, probes, runtimes, tasks, Store};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/runtimes", web::get().to(list))
        .route("/runtimes/{id}", web::delete().to(delete))
        .route(
            "/runtimes/{id}/unbind-agents-and-delete",
            web::post().to(unbind_and_delete),
        )
        .route("/runtimes/{id}", web::patch().to(edit))
        .route("/runtimes/{id}/claim", web::post().to(claim))
        .route("/runtimes/{id}/activity", web::get().to(activity))
        .route("/runtimes/{id}/ping", web::post().to(start_ping))
        .route("/runtimes/{id}/ping/{ping_id}", web::get().to(get_ping))
        .route("/runtimes/{id}/update", web::post().to(start_update))
        .route(
            "/runtimes/{id}/update/{update_id}",
            web::get().to(get_update),
        );
}

#[derive(Deserialize)]
struct ListQuery {
    owner: Option<String>,
}

/// `GET /api/runtimes[?owner=me]`: the workspace's runtimes, oldest first,
/// one page at a time (see [`Page`]).
async fn list(
    db: web::Data<Store>,
    access: WorkspaceAccess,
    query: web::Query<ListQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let owner = match query.owner.as_deref() {
        None | Some("") => None,
        Some("me") => Some(access.user_id),
        Some(_) => return Err(ApiError::bad_request("owner must be \"me\" when given")),
    };
    let page = Page::of(&req)?;
    let fetch = page.clone();
    let rows = db
        .read(move |conn| -> Result<_, ApiError> {
            Ok(runtimes::list(
                conn,
                access.workspace_id,
                owner,
                fetch.after(),
                fetch.fetch(),
            )?)
        })
        .await?;
    Ok(page::reply(&req, &page, rows, |r| (r.created_at, r.id)))
}

/// Owners and admins delete any runtime, members only their own; archived
/// agents go with it, active ones block it (409).
async fn delete(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: AuthUser,
    path: web::Path<RuntimeId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let workspace = db
        .write(move |tx| -> Result<_, ApiError> {
            let (runtime, role) = require_member_runtime(tx, caller.user_id, id)?;
            if !controls_runtime(&runtime, caller.user_id, role) {
                return Err(ApiError::forbidden("you can only delete your own runtimes"));
            }
            // the agents to archive or move first, named, so a client can
            // show them or resolve the refusal
            let active = runtimes::active_agents(tx, id, MAX_LISTED_AGENTS)?;
            if !active.is_empty() {
                return Err(active_agents_conflict(
                    "cannot delete runtime: it has active agents bound to it. \
                     Archive or reassign the agents first.",
                    &active,
                ));
            }
            runtimes::delete(tx, id)?;
            Ok(runtime.workspace_id)
        })
        .await?;
    log::info!("runtime {id} deleted by {}", caller.user_id);
    events.publish(
        DAEMON_REGISTER,
        workspace,
        json!({"action": "delete", "runtime_id": id}),
    );
    Ok(super::ok())
}

/// Most agents a refused delete names (`active_agents`).
const MAX_LISTED_AGENTS: i64 = 100;

/// Most agents one unbind-and-delete confirms.
const MAX_UNBOUND_AGENTS: usize = 1000;

/// A 409 that names the runtime's active agents (at most
/// [`MAX_LISTED_AGENTS`]) under `code: "runtime_has_active_agents"`, so a
/// client can show them or confirm them to unbind-and-delete.
fn active_agents_conflict(message: &str, active: &[(AgentId, String)]) -> ApiError {
    let listed: Vec<serde_json::Value> = active
        .iter()
        .take(MAX_LISTED_AGENTS as usize)
        .map(|(id, name)| json!({"id": id, "name": name}))
        .collect();
    let mut fields = serde_json::Map::new();
    fields.insert("code".into(), json!("runtime_has_active_agents"));
    fields.insert("active_agents".into(), serde_json::Value::Array(listed));
    ApiError::ConflictWith(message.into(), fields)
}

/// The agent ids of an unbind-and-delete body, each once.
fn expected_agents(body: &serde_json::Value) -> Result<Vec<AgentId>, ApiError> {
    const FIELD: &str = "expected_active_agent_ids";
    let object = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    if let Some(other) = object.keys().find(|k| k.as_str() != FIELD) {
        return Err(ApiError::bad_request(format!(
            "{other} is not a field of this request ({FIELD})"
        )));
    }
    let listed = match object.get(FIELD) {
        Some(serde_json::Value::Array(listed)) => listed,
        _ => {
            return Err(ApiError::bad_request(format!(
                "{FIELD} is required: the ids of the agents to unbind"
            )))
        }
    };
    if listed.len() > MAX_UNBOUND_AGENTS {
        return Err(ApiError::bad_request(format!(
            "{FIELD} lists at most {MAX_UNBOUND_AGENTS} agents"
        )));
    }
    let mut ids = Vec::with_capacity(listed.len());
    for value in listed {
        let id: AgentId = value
            .as_str()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| ApiError::bad_request(format!("{FIELD} holds an invalid agent id")))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids.sort();
    Ok(ids)
}

/// `POST /api/runtimes/{id}/unbind-agents-and-delete
/// {expected_active_agent_ids}` (whoever may delete the runtime): retires
/// a machine in one transaction. Its active agents must be exactly the ones
/// confirmed (409 with the current ones otherwise, nothing changed); their
/// unfinished tasks are cancelled, every agent of the runtime (archived
/// ones too) is unbound (`runtime_id` null) and keeps its settings, tasks,
/// transcripts and usage, and the runtime is deleted. Replies
/// `{agents_unbound, tasks_cancelled}`.
async fn unbind_and_delete(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: AuthUser,
    path: web::Path<RuntimeId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let expected = expected_agents(&super::json_object(&body)?)?;
    let (workspace, unbound) = db
        .write(move |tx| -> Result<_, ApiError> {
            let (runtime, role) = require_member_runtime(tx, caller.user_id, id)?;
            if !controls_runtime(&runtime, caller.user_id, role) {
                return Err(ApiError::forbidden("you can only delete your own runtimes"));
            }
            // only then: nobody outside may hold the row
            runtimes::lock(tx, id)?;
            let active = runtimes::active_agents(tx, id, MAX_UNBOUND_AGENTS as i64 + 1)?;
            let mut actual: Vec<AgentId> = active.iter().map(|(id, _)| *id).collect();
            actual.sort();
            if actual != expected {
                return Err(active_agents_conflict(
                    "the runtime's active agents are not the ones confirmed: \
                     nothing was changed; confirm the agents listed",
                    &active,
                ));
            }
            let mut unbound = Vec::new();
            for (agent, _) in &active {
                agents::lock(tx, *agent)?;
                let cancelled = tasks::cancel_for_agent(tx, *agent)?;
                let status = agents::reconcile_status(tx, *agent)?;
                if let Some(agent) = agents::get(tx, *agent)? {
                    unbound.push((agent, cancelled, status));
                }
            }
            runtimes::unbind_agents(tx, id, Timestamp::now())?;
            runtimes::delete(tx, id)?;
            Ok((runtime.workspace_id, unbound))
        })
        .await?;
    log::info!(
        "runtime {id} deleted by {} with {} agent(s) unbound",
        caller.user_id,
        unbound.len()
    );
    let mut cancelled_count = 0;
    for (agent, cancelled, status) in &unbound {
        let audience = Audience::of_agent(agent);
        cancelled_count += cancelled.len();
        for task in cancelled {
            events.task("task:cancelled", audience, workspace, *task, Some(agent.id));
        }
        if let Some(status) = status {
            events.agent_status(audience, workspace, agent.id, *status);
        }
    }
    events.publish(
        DAEMON_REGISTER,
        workspace,
        json!({"action": "delete", "runtime_id": id}),
    );
    Ok(HttpResponse::Ok().json(json!({
        "agents_unbound": unbound.len(),
        "tasks_cancelled": cancelled_count,
    })))
}

/// Longest name people may give a runtime, in characters.
const MAX_CUSTOM_NAME: usize = 100;

/// What `PATCH /api/runtimes/{id}` changes.
struct RuntimeSettings {
    visibility: Option<Visibility>,
    /// `Some(None)`: clear the name.
    custom_name: Option<Option<String>>,
    apply_to_machine: bool,
    /// `Some(None)`: no limit of its own.
    max_concurrent_tasks: Option<Option<i64>>,
    /// `Some(None)`: no limit on its machine.
    machine_max_concurrent_tasks: Option<Option<i64>>,
}

/// Highest capacity a runtime or a machine may be given (tasks at once).
const MAX_RUNTIME_CAPACITY: i64 = 1000;

fn parse_runtime_settings(body: &serde_json::Value) -> Result<RuntimeSettings, ApiError> {
    const FIELDS: [&str; 5] = [
        "visibility",
        "custom_name",
        "apply_to_machine",
        "max_concurrent_tasks",
        "machine_max_concurrent_tasks",
    ];
    let object = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    if let Some(other) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "{other} is not a runtime setting (visibility, custom_name, apply_to_machine, \
             max_concurrent_tasks, machine_max_concurrent_tasks)"
        )));
    }
    let visibility = match object.get("visibility") {
        None => None,
        Some(serde_json::Value::String(v)) => Some(v.parse().map_err(ApiError::bad_request)?),
        Some(_) => {
            return Err(ApiError::bad_request(
                "visibility must be workspace or private",
            ))
        }
    };
    let custom_name = match object.get("custom_name") {
        None => None,
        Some(serde_json::Value::Null) => Some(None),
        Some(serde_json::Value::String(name)) => {
            let name = name.trim();
            if name.chars().count() > MAX_CUSTOM_NAME {
                return Err(ApiError::bad_request(format!(
                    "custom_name is too long (at most {MAX_CUSTOM_NAME} characters)"
                )));
            }
            if name.chars().any(char::is_control) {
                return Err(ApiError::bad_request(
                    "custom_name must not contain control characters",
                ));
            }
            Some((!name.is_empty()).then(|| name.to_string()))
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "custom_name must be a string or null",
            ))
        }
    };
    let apply_to_machine = match object.get("apply_to_machine") {
        None => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("apply_to_machine must be a boolean")),
    };
    let capacity = |field: &str| {
        object
            .get(field)
            .map(|v| super::capacity(v, field, MAX_RUNTIME_CAPACITY))
            .transpose()
    };
    let max_concurrent_tasks = capacity("max_concurrent_tasks")?;
    let machine_max_concurrent_tasks = capacity("machine_max_concurrent_tasks")?;
    if visibility.is_none()
        && custom_name.is_none()
        && max_concurrent_tasks.is_none()
        && machine_max_concurrent_tasks.is_none()
    {
        return Err(ApiError::bad_request(
            "nothing to change: give visibility, custom_name, max_concurrent_tasks \
             or machine_max_concurrent_tasks",
        ));
    }
    if apply_to_machine && custom_name.is_none() {
        return Err(ApiError::bad_request(
            "apply_to_machine renames the machine's runtimes: give custom_name",
        ));
    }
    Ok(RuntimeSettings {
        visibility,
        custom_name,
        apply_to_machine,
        max_concurrent_tasks,
        machine_max_concurrent_tasks,
    })
}

/// `PATCH /api/runtimes/{id}` `{visibility?, custom_name?,
/// apply_to_machine?, max_concurrent_tasks?, machine_max_concurrent_tasks?}`,
/// in one transaction:
/// - `visibility`, the runtime's owner only: who may bind agents to it
///   (`private`: the owner; `workspace`: the owner and the workspace's
///   owners and admins). Workspace owners and admins are refused (403):
///   the consent is the machine owner's. Agents bound before stay bound.
/// - `custom_name` (at most 100 characters; null or "" clears it), the
///   owner or a workspace owner/admin; with `apply_to_machine: true`, on
///   every runtime its daemon registered in the workspace (each one the
///   caller's to rename, or nothing changes).
/// - `max_concurrent_tasks` (1 to 1,000, or null for none), the owner only:
///   most tasks dispatched to or running on this runtime at once.
/// - `machine_max_concurrent_tasks` (1 to 1,000, or null for none), the
///   owner only: most tasks at once on every runtime its daemon registered
///   for its owner, in any workspace. A runtime without a daemon id or an
///   owner has no machine (400).
///
/// A claim over any limit leaves the task queued; tasks already running
/// are left alone when a limit is lowered.
///
/// Any other field is a 400, so nothing is taken for saved that agenthub
/// does not keep. The reply is the runtime.
async fn edit(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: AuthUser,
    path: web::Path<RuntimeId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let settings = parse_runtime_settings(&super::json_object(&body)?)?;
    let (runtime, changed) = db
        .write(move |tx| -> Result<_, ApiError> {
            let (mut runtime, role) = require_member_runtime(tx, caller.user_id, id)?;
            let now = Timestamp::now();
            let mut changed = vec![id];
            if let Some(visibility) = settings.visibility {
                if runtime.owner_id != Some(caller.user_id) {
                    return Err(ApiError::forbidden(
                        "only the runtime's owner can change who may bind agents to it",
                    ));
                }
                runtime = runtimes::set(tx, id, Setting::Visibility(visibility), now)?
                    .ok_or_else(|| ApiError::not_found("runtime not found"))?;
            }
            let capacity = settings.max_concurrent_tasks.is_some()
                || settings.machine_max_concurrent_tasks.is_some();
            if capacity && runtime.owner_id != Some(caller.user_id) {
                return Err(ApiError::forbidden(
                    "only the runtime's owner can change how many tasks it runs",
                ));
            }
            if let Some(max) = settings.max_concurrent_tasks {
                runtime = runtimes::set(tx, id, Setting::Capacity(max), now)?
                    .ok_or_else(|| ApiError::not_found("runtime not found"))?;
            }
            if let Some(max) = settings.machine_max_concurrent_tasks {
                let daemon = runtime.daemon_id.clone().ok_or_else(|| {
                    ApiError::bad_request("this runtime has no daemon id, so no machine to limit")
                })?;
                runtimes::set_machine_capacity(tx, caller.user_id, &daemon, max, now)?;
                let machine = runtimes::of_machine(tx, runtime.workspace_id, &daemon)?;
                changed.extend(machine.iter().map(|r| r.id));
                runtime = runtimes::get(tx, id)?
                    .ok_or_else(|| ApiError::not_found("runtime not found"))?;
            }
            if let Some(name) = &settings.custom_name {
                let targets = match (&runtime.daemon_id, settings.apply_to_machine) {
                    (Some(daemon), true) => runtimes::of_machine(tx, runtime.workspace_id, daemon)?,
                    _ => vec![runtime.clone()],
                };
                if !targets
                    .iter()
                    .all(|r| controls_runtime(r, caller.user_id, role))
                {
                    return Err(ApiError::forbidden(
                        "only the runtime's owner or a workspace owner or admin can rename it",
                    ));
                }
                changed.extend(targets.iter().map(|r| r.id));
                for target in &targets {
                    let renamed =
                        runtimes::set(tx, target.id, Setting::CustomName(name.as_deref()), now)?
                            .ok_or_else(|| ApiError::not_found("runtime not found"))?;
                    if renamed.id == id {
                        runtime = renamed;
                    }
                }
            }
            changed.sort();
            changed.dedup();
            Ok((runtime, changed))
        })
        .await?;
    changed_runtimes(&events, &runtime, &changed);
    Ok(HttpResponse::Ok().json(runtime))
}

/// `POST /api/runtimes/{id}/claim` (workspace owners and admins): makes
/// the caller the owner of a runtime that has none (its owner left the
/// instance), so that agents can be bound to it again; 409 when it has an
/// owner. It stays as visible as it was.
async fn claim(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: AuthUser,
    path: web::Path<RuntimeId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let runtime = db
        .write(move |tx| -> Result<_, ApiError> {
            let (runtime, role) = require_member_runtime(tx, caller.user_id, id)?;
            if !role.is_manager() {
                return Err(ApiError::forbidden(
                    "only workspace owners and admins can claim a runtime",
                ));
            }
            if runtime.owner_id.is_some() {
                return Err(ApiError::conflict("this runtime has an owner"));
            }
            runtimes::claim(tx, id, caller.user_id, Timestamp::now())?
                .ok_or_else(|| ApiError::conflict("this runtime has an owner"))
        })
        .await?;
    log::info!("runtime {id} claimed by {}", caller.user_id);
    changed_runtimes(&events, &runtime, &[id]);
    Ok(HttpResponse::Ok().json(runtime))
}

/// Tells the workspace's dashboards that these of its runtimes changed
/// (`daemon:register {action: "update"}`).
fn changed_runtimes(events: &EventBus, runtime: &runtimes::Runtime, ids: &[RuntimeId]) {
    for id in ids {
        events.publish(
            DAEMON_REGISTER,
            runtime.workspace_id,
            json!({"action": "update", "runtime_id": id}),
        );
    }
}

#[derive(serde::Deserialize)]
struct ActivityQuery {
    tz: Option<String>,
}

/// `[{hour, count}]`: how many of the runtime's tasks started in each hour
/// of the day, in UTC or in the `?tz=` zone (an unknown zone is a 400),
/// for the hours that have any; members of the runtime's workspace only.
/// Exact in every zone: starts are counted per UTC quarter hour, and each
/// quarter is placed in the local hour of its own date.
async fn activity(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<RuntimeId>,
    query: web::Query<ActivityQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let zone = super::usage::zone(query.tz.as_deref())?;
    let quarters = db
        .read(move |conn| -> Result<_, ApiError> {
            require_member_runtime(conn, caller.user_id, id)?;
            Ok(tasks::start_quarters(conn, id)?)
        })
        .await?;
    let mut hours = std::collections::BTreeMap::new();
    for (at, count) in quarters {
        let hour = match zone {
            Some(tz) => chrono::Timelike::hour(&at.with_timezone(&tz)),
            None => chrono::Timelike::hour(&at),
        };
        *hours.entry(hour).or_insert(0i64) += count;
    }
    let rows: Vec<tasks::HourCount> = hours
        .into_iter()
        .map(|(hour, count)| tasks::HourCount {
            hour: i64::from(hour),
            count,
        })
        .collect();
    Ok(HttpResponse::Ok().json(rows))
}

/// Queues a ping or update on the runtime, if `caller` may: a ping runs
/// an agent on someone's machine, so only its owner or a workspace
/// owner/admin may. The check and the bounds are decided in the write that
/// queues it.
async fn start_probe(
    db: &Store,
    caller: AuthUser,
    id: RuntimeId,
    kind: ProbeKind,
    target_version: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let probe = db
        .write(move |tx| -> Result<_, ApiError> {
            let (runtime, role) = require_member_runtime(tx, caller.user_id, id)?;
            if !controls_runtime(&runtime, caller.user_id, role) {
                return Err(ApiError::forbidden(format!(
                    "only the runtime's owner or a workspace owner or admin can {kind} it"
                )));
            }
            probes::create(tx, kind, id, target_version)?.map_err(|why| refused(kind, why))
        })
        .await?;
    Ok(HttpResponse::Ok().json(probe))
}

async fn start_ping(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<RuntimeId>,
) -> Result<HttpResponse, ApiError> {
    start_probe(&db, caller, path.into_inner(), ProbeKind::Ping, None).await
}

#[derive(Deserialize)]
struct UpdateRequest {
    target_version: Option<String>,
}

async fn start_update(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<RuntimeId>,
    body: web::Json<UpdateRequest>,
) -> Result<HttpResponse, ApiError> {
    let target = super::required(body.target_version.as_deref(), "target_version")?;
    // stored, shown with the update and handed to the daemon
    super::at_most(&target, "target_version", MAX_TARGET_VERSION)?;
    start_probe(
        &db,
        caller,
        path.into_inner(),
        ProbeKind::Update,
        Some(target),
    )
    .await
}

/// Members of the runtime's workspace may read its pings and updates.
async fn get_probe(
    kind: ProbeKind,
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<(RuntimeId, ProbeId)>,
) -> Result<HttpResponse, ApiError> {
    let (runtime, id) = path.into_inner();
    let probe = db
        .read(move |conn| -> Result<_, ApiError> {
            require_member_runtime(conn, caller.user_id, runtime)?;
            probes::get(conn, kind, runtime, id)?.ok_or_else(|| not_found(kind))
        })
        .await?;
    Ok(HttpResponse::Ok().json(probe))
}

async fn get_ping(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<(RuntimeId, ProbeId)>,
) -> Result<HttpResponse, ApiError> {
    get_probe(ProbeKind::Ping, db, caller, path).await
}

async fn get_update(
    db: web::Data<Store>,
    caller: AuthUser,
    path: web::Path<(RuntimeId, ProbeId)>,
) -> Result<HttpResponse, ApiError> {
    get_probe(ProbeKind::Update, db, caller, path).await
}
