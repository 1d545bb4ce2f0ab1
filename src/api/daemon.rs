//! The daemon protocol: register, deregister, heartbeat, and the results of
//! pings and updates. Daemon routes accept a daemon token (its own workspace
//! only) or a PAT (the workspaces its user belongs to); anything out of
//! reach answers 404.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{required, short_text};
use crate::access::{daemon_reaches, require_daemon_runtime};
use crate::auth::Caller;
use crate::db::runtimes::{self, Registration, Runtime};
use crate::db::Db;
use crate::domain::Id;
use crate::error::ApiError;
use crate::events::{EventBus, DAEMON_REGISTER};
use crate::heartbeats::Heartbeats;
use crate::probes::{Kind, Outcome, Probes, Status};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/daemon/register", web::post().to(register))
        .route("/daemon/deregister", web::post().to(deregister))
        .route("/daemon/heartbeat", web::post().to(heartbeat))
        .route(
            "/daemon/runtimes/{id}/ping/{ping_id}/result",
            web::post().to(ping_result),
        )
        .route(
            "/daemon/runtimes/{id}/update/{update_id}/result",
            web::post().to(update_result),
        );
}

#[derive(Deserialize)]
struct RegisterRequest {
    workspace_id: Option<String>,
    daemon_id: Option<String>,
    device_name: Option<String>,
    cli_version: Option<String>,
    runtimes: Option<Vec<RuntimeSpec>>,
}

#[derive(Deserialize)]
struct RuntimeSpec {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    version: Option<String>,
    status: Option<String>,
}

#[derive(Serialize)]
struct RegisterResponse {
    runtimes: Vec<Runtime>,
    /// Kept for wire compatibility; agenthub tracks no repositories.
    repos: Vec<serde_json::Value>,
}

/// The member a registration acts for: the PAT's user, or the member who
/// minted the daemon token — which registers only its own daemon_id.
fn owner_for(caller: &Caller, workspace_id: Id, daemon_id: &str) -> Result<Id, ApiError> {
    match caller {
        Caller::User { user_id } => Ok(*user_id),
        Caller::Task(_) => Err(ApiError::not_found("workspace not found")),
        Caller::Daemon(daemon) => {
            // out-of-workspace first, so other workspaces cannot be probed
            if daemon.workspace_id != workspace_id {
                return Err(ApiError::not_found("workspace not found"));
            }
            if daemon.daemon_id != daemon_id {
                return Err(ApiError::forbidden(format!(
                    "this daemon token was minted for daemon_id {:?}",
                    daemon.daemon_id
                )));
            }
            daemon.minted_by.ok_or_else(|| {
                ApiError::forbidden("the member who minted this daemon token is gone")
            })
        }
    }
}

/// What every runtime of one registration shares.
struct Machine {
    workspace_id: Id,
    daemon_id: String,
    device_name: String,
    cli_version: String,
    owner: Id,
}

/// One runtime of the request, with the protocol's defaults applied.
fn registration(machine: &Machine, i: usize, spec: &RuntimeSpec) -> Result<Registration, ApiError> {
    let field = |name: &str| format!("runtimes[{i}].{name}");
    let provider = Some(short_text(spec.kind.as_deref(), &field("type"))?)
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    let version = short_text(spec.version.as_deref(), &field("version"))?;
    let device_name = &machine.device_name;
    let name = Some(short_text(spec.name.as_deref(), &field("name"))?)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| {
            if device_name.is_empty() {
                provider.clone()
            } else {
                format!("{provider} ({device_name})")
            }
        });
    let device_info = [device_name.as_str(), version.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" · ");
    let status = match short_text(spec.status.as_deref(), &field("status"))?.as_str() {
        "offline" => "offline",
        _ => "online",
    };
    let metadata = json!({"version": version, "cli_version": machine.cli_version});
    Ok(Registration {
        workspace_id: machine.workspace_id,
        daemon_id: machine.daemon_id.clone(),
        provider,
        name,
        status,
        device_info,
        metadata: metadata.to_string(),
        owner: machine.owner,
    })
}

/// Turns the request into validated registrations (before any database
/// work).
fn registrations(
    req: &RegisterRequest,
    caller: &Caller,
) -> Result<(Id, Vec<Registration>), ApiError> {
    let workspace_id: Id = required(req.workspace_id.as_deref(), "workspace_id")?
        .parse()
        .map_err(|e| ApiError::bad_request(format!("invalid workspace_id: {e}")))?;
    let daemon_id = short_text(req.daemon_id.as_deref(), "daemon_id")?;
    if daemon_id.is_empty() {
        return Err(ApiError::bad_request("daemon_id is required"));
    }
    let specs = req.runtimes.as_deref().unwrap_or_default();
    if specs.is_empty() {
        return Err(ApiError::bad_request("at least one runtime is required"));
    }
    if specs.len() > MAX_RUNTIMES_PER_REGISTRATION {
        return Err(ApiError::bad_request(format!(
            "a registration carries at most {MAX_RUNTIMES_PER_REGISTRATION} runtimes"
        )));
    }
    let machine = Machine {
        owner: owner_for(caller, workspace_id, &daemon_id)?,
        workspace_id,
        daemon_id,
        device_name: short_text(req.device_name.as_deref(), "device_name")?,
        cli_version: short_text(req.cli_version.as_deref(), "cli_version")?,
    };
    let regs = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| registration(&machine, i, spec))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((workspace_id, regs))
}

/// Most runtimes one registration may carry (a machine has a handful of
/// agent CLIs); more is a 400.
pub const MAX_RUNTIMES_PER_REGISTRATION: usize = 100;
/// Most runtimes a workspace may hold; a registration that would add more
/// is a 409.
pub const MAX_RUNTIMES_PER_WORKSPACE: i64 = 50_000;

/// Refuses a registration that would grow the workspace past
/// [`MAX_RUNTIMES_PER_WORKSPACE`]: one index lookup per runtime, and one
/// read of the workspace's runtime counter when a runtime would be added.
fn check_capacity(
    tx: &rusqlite::Connection,
    workspace: Id,
    regs: &[Registration],
) -> Result<(), ApiError> {
    let mut new = 0;
    for reg in regs {
        if !runtimes::exists(tx, workspace, &reg.daemon_id, &reg.provider)? {
            new += 1;
        }
    }
    if new > 0 && runtimes::count_in_workspace(tx, workspace)? + new > MAX_RUNTIMES_PER_WORKSPACE {
        return Err(ApiError::conflict(format!(
            "this workspace already has the most runtimes allowed ({MAX_RUNTIMES_PER_WORKSPACE}); delete unused ones first"
        )));
    }
    Ok(())
}

/// 409 for a daemon_id whose runtimes belong to another member: a machine
/// has one owner, so nobody can add runtimes that pose as part of it.
pub fn daemon_taken(daemon_id: &str) -> ApiError {
    ApiError::conflict(format!(
        "daemon_id {daemon_id:?} is registered to another member"
    ))
}

/// Upserts every runtime of the daemon in one transaction (all or none) and
/// moves agents over from this machine's old offline registrations. A
/// daemon_id whose runtimes belong to another member is a 409: the daemon
/// route never changes who owns a machine.
async fn register(
    db: web::Data<Db>,
    events: web::Data<EventBus>,
    caller: Caller,
    body: web::Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let (workspace_id, regs) = registrations(&body, &caller)?;
    let daemon_id = regs[0].daemon_id.clone();
    let runtimes = db
        .write(move |tx| {
            if !daemon_reaches(tx, &caller, workspace_id)? {
                return Err(ApiError::not_found("workspace not found"));
            }
            let (daemon_id, owner) = (&regs[0].daemon_id, regs[0].owner);
            if runtimes::daemon_owned_by_other(tx, workspace_id, daemon_id, owner)? {
                return Err(daemon_taken(daemon_id));
            }
            check_capacity(tx, workspace_id, &regs)?;
            let mut out = Vec::with_capacity(regs.len());
            for reg in &regs {
                let runtime =
                    runtimes::upsert(tx, reg)?.ok_or_else(|| daemon_taken(&reg.daemon_id))?;
                let moved = runtimes::migrate_agents(tx, &runtime)?;
                if moved > 0 {
                    log::info!(
                        "moved {moved} agent(s) to runtime {} from older registrations of {}",
                        runtime.id,
                        reg.daemon_id
                    );
                }
                out.push(runtime);
            }
            Ok(out)
        })
        .await?;
    events.publish(
        DAEMON_REGISTER,
        workspace_id,
        json!({"action": "register", "daemon_id": daemon_id, "runtimes": runtimes}),
    );
    Ok(HttpResponse::Ok().json(RegisterResponse {
        runtimes,
        repos: Vec::new(),
    }))
}

#[derive(Deserialize)]
struct DeregisterRequest {
    #[serde(default)]
    runtime_ids: Vec<Id>,
}

/// Marks the caller's runtimes offline; ids it cannot reach are skipped.
async fn deregister(
    db: web::Data<Db>,
    events: web::Data<EventBus>,
    caller: Caller,
    body: web::Json<DeregisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let ids = body.into_inner().runtime_ids;
    let affected = db
        .write(move |tx| {
            let mut affected = Vec::new();
            for id in ids {
                match require_daemon_runtime(tx, &caller, id) {
                    Ok(runtime) => {
                        runtimes::set_offline(tx, id)?;
                        affected.push(runtime);
                    }
                    Err(ApiError::NotFound(_)) => continue,
                    Err(other) => return Err(other),
                }
            }
            Ok(affected)
        })
        .await?;
    for runtime in affected {
        events.publish(
            DAEMON_REGISTER,
            runtime.workspace_id,
            json!({"action": "deregister", "runtime_id": runtime.id}),
        );
    }
    Ok(super::ok())
}

#[derive(Deserialize)]
struct HeartbeatRequest {
    runtime_id: Option<Id>,
}

#[derive(Serialize)]
struct PendingPing {
    id: Id,
}

#[derive(Serialize)]
struct PendingUpdate {
    id: Id,
    target_version: String,
}

#[derive(Serialize)]
pub(crate) struct HeartbeatResponse {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_ping: Option<PendingPing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_update: Option<PendingUpdate>,
}

/// Marks the runtime online and hands over any ping or update the UI asked
/// for. A runtime that is gone answers 404 `runtime not found`, telling the
/// daemon to register again. An online runtime's new last-seen time goes
/// through the heartbeat group commit; bringing a runtime back online is
/// written at once.
async fn heartbeat(
    db: web::Data<Db>,
    probes: web::Data<Probes>,
    heartbeats: web::Data<Heartbeats>,
    caller: Caller,
    body: web::Json<HeartbeatRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = body
        .runtime_id
        .ok_or_else(|| ApiError::bad_request("runtime_id is required"))?;
    let reply = beat(&db, &probes, &heartbeats, caller, id).await?;
    Ok(HttpResponse::Ok().json(reply))
}

/// What [`heartbeat`] does, shared with the daemon socket's
/// `daemon:heartbeat`.
pub(crate) async fn beat(
    db: &Db,
    probes: &Probes,
    heartbeats: &Heartbeats,
    caller: Caller,
    id: Id,
) -> Result<HeartbeatResponse, ApiError> {
    let runtime = db
        .read(move |conn| require_daemon_runtime(conn, &caller, id))
        .await?;
    if runtime.status == "online" {
        heartbeats.record(id, crate::db::now());
    } else if !db.write(move |tx| Ok(runtimes::heartbeat(tx, id)?)).await? {
        // deleted between the read and the write
        return Err(ApiError::not_found("runtime not found"));
    }
    Ok(HeartbeatResponse {
        status: "ok",
        pending_ping: probes
            .take_pending(Kind::Ping, id)
            .map(|p| PendingPing { id: p.id }),
        pending_update: probes
            .take_pending(Kind::Update, id)
            .map(|p| PendingUpdate {
                id: p.id,
                target_version: p.target_version.unwrap_or_default(),
            }),
    })
}

#[derive(Deserialize)]
struct ResultRequest {
    status: Option<String>,
    output: Option<String>,
    error: Option<String>,
    duration_ms: Option<i64>,
}

impl ResultRequest {
    /// Pings finish as completed or failed; updates may also report
    /// `running` while they progress.
    fn outcome(self, kind: Kind) -> Result<Outcome, ApiError> {
        let status = match (self.status.as_deref().map(str::trim), kind) {
            (Some("completed"), _) => Status::Completed,
            (Some("failed"), _) => Status::Failed,
            (Some("running"), Kind::Update) => Status::Running,
            _ => {
                return Err(ApiError::bad_request(match kind {
                    Kind::Ping => "status must be completed or failed",
                    Kind::Update => "status must be running, completed or failed",
                }))
            }
        };
        if self.duration_ms.is_some_and(|d| d < 0) {
            return Err(ApiError::bad_request("duration_ms must not be negative"));
        }
        Ok(Outcome {
            status,
            output: self.output.unwrap_or_default(),
            error: self.error.unwrap_or_default(),
            duration_ms: self.duration_ms,
        })
    }
}

async fn probe_result(
    kind: Kind,
    db: web::Data<Db>,
    probes: web::Data<Probes>,
    caller: Caller,
    path: web::Path<(Id, Id)>,
    body: web::Json<ResultRequest>,
) -> Result<HttpResponse, ApiError> {
    let (runtime, probe) = path.into_inner();
    let outcome = body.into_inner().outcome(kind)?;
    db.read(move |conn| require_daemon_runtime(conn, &caller, runtime).map(|_| ()))
        .await?;
    let probe = probes.finish(kind, runtime, probe, outcome)?;
    Ok(HttpResponse::Ok().json(probe))
}

async fn ping_result(
    db: web::Data<Db>,
    probes: web::Data<Probes>,
    caller: Caller,
    path: web::Path<(Id, Id)>,
    body: web::Json<ResultRequest>,
) -> Result<HttpResponse, ApiError> {
    probe_result(Kind::Ping, db, probes, caller, path, body).await
}

async fn update_result(
    db: web::Data<Db>,
    probes: web::Data<Probes>,
    caller: Caller,
    path: web::Path<(Id, Id)>,
    body: web::Json<ResultRequest>,
) -> Result<HttpResponse, ApiError> {
    probe_result(Kind::Update, db, probes, caller, path, body).await
}
