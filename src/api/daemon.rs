//! The daemon protocol: register, deregister, heartbeat, the daemon's
//! workspaces, and the results of pings and updates. Daemon routes accept a
//! daemon token (its own workspace only) or a PAT (the workspaces its user
//! belongs to); anything out of reach answers 404. Both the April 2026
//! daemon and today's are served: what today's adds (former daemon ids,
//! failed profiles, offline reasons, server capabilities) is optional.

mod offline;
mod register;
mod workspaces;

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::access::{require_daemon_runtime, require_daemon_workspace};
use crate::auth::Caller;
use crate::domain::{ProbeId, ProbeKind, ProbeStatus, RuntimeId, RuntimeStatus, TaskId, Timestamp};
use crate::error::ApiError;
use crate::events::{EventBus, DAEMON_REGISTER};
use crate::failures::Failures;
use crate::heartbeats::Heartbeats;
use crate::probes::{already_ended, clip, not_found};
use crate::store::probes::{self, Finished, Outcome};
use crate::store::runtimes::{self, Runtime};
use crate::store::tasks::{self, ActiveTask};
use crate::store::Conn;
use crate::store::Store;

pub use register::{
    MAX_LEGACY_DAEMON_IDS, MAX_RUNTIMES_PER_REGISTRATION, MAX_RUNTIMES_PER_WORKSPACE,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/daemon/register", web::post().to(register))
        .route("/daemon/deregister", web::post().to(deregister))
        .route("/daemon/heartbeat", web::post().to(heartbeat))
        .route("/daemon/workspaces", web::get().to(workspaces::list))
        .route(
            "/daemon/runtimes/{id}/ping/{ping_id}/result",
            web::post().to(ping_result),
        )
        .route(
            "/daemon/runtimes/{id}/update/{update_id}/result",
            web::post().to(update_result),
        );
}

/// What agenthub serves beyond the April 2026 daemon protocol, sent as
/// `server_capabilities` with every heartbeat ack — the one list to extend
/// when the server learns something new.
///
/// Today's daemon acts on a single name here, `rpc-v1`, read from the
/// WebSocket's heartbeat ack: it then claims work over the socket
/// (`tasks.claim`, src/api/daemon_ws). It finds batch claim and
/// `GET /api/daemon/workspaces` by trying them (a 404 sends it back to the
/// older routes) and task-scoped tokens in the claim reply; the other
/// names tell other clients, and people, what they may rely on.
pub const SERVER_CAPABILITIES: &[&str] = &[
    crate::api::daemon_ws::RPC_V1,
    "batch-claim-v1",
    "daemon-workspaces-v1",
    "task-tokens-v1",
    "legacy-daemon-ids-v1",
    "offline-reasons-v1",
];

/// The version of an empty repository list (the SHA-256 of no URLs):
/// agenthub keeps no repositories, so a daemon has none to sync.
const REPOS_VERSION: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[derive(Serialize)]
struct RegisterResponse {
    runtimes: Vec<Runtime>,
    /// Always empty: agenthub tracks no repositories.
    repos: Vec<serde_json::Value>,
    repos_version: &'static str,
    /// Workspace settings for the daemon: none, so it keeps its defaults.
    settings: serde_json::Value,
    /// The registered runtimes' dispatched and running tasks: still the
    /// daemon's own.
    active_tasks: Vec<ActiveTask>,
}

/// 409 for a daemon_id whose runtimes belong to another member: a machine
/// has one owner, so nobody can add runtimes that pose as part of it.
pub fn daemon_taken(daemon_id: &str) -> ApiError {
    ApiError::conflict(format!(
        "daemon_id {daemon_id:?} is registered to another member"
    ))
}

/// Upserts the runtime of one registration row.
fn upsert(tx: &Conn<'_>, reg: &runtimes::Registration) -> Result<Runtime, ApiError> {
    runtimes::upsert(tx, reg)?.ok_or_else(|| daemon_taken(&reg.daemon_id))
}

/// Brings this machine's older registrations over to `runtime`: agents of
/// its old offline profile-suffixed runtimes, and everything of the
/// runtimes of its former daemon ids. Returns the runtimes folded in.
fn adopt_older(
    tx: &Conn<'_>,
    runtime: &Runtime,
    legacy: &[String],
) -> Result<Vec<RuntimeId>, ApiError> {
    let moved = runtimes::migrate_agents(tx, runtime)?;
    if moved > 0 {
        log::info!(
            "moved {moved} agent(s) to runtime {} from older registrations",
            runtime.id
        );
    }
    let folded = runtimes::fold_legacy(tx, runtime, legacy)?;
    if !folded.runtimes.is_empty() {
        log::info!(
            "folded runtime(s) {:?} of former daemon ids into {} ({} agent(s), {} task(s))",
            folded.runtimes,
            runtime.id,
            folded.agents,
            folded.tasks
        );
    }
    Ok(folded.runtimes)
}

/// What one registration wrote: the runtimes (answered back), the ids of
/// the runtimes folded in and deleted, the tasks it reconciled, and the
/// tasks still the daemon's own.
struct Registered {
    runtimes: Vec<Runtime>,
    folded: Vec<RuntimeId>,
    reconciled: Option<Failures>,
    active_tasks: Vec<ActiveTask>,
}

/// The writes of one registration, all in one transaction: the runtimes,
/// the failed profiles, what moves over from older registrations, and —
/// when the daemon listed the tasks it still runs — the reconciliation of
/// the others.
fn write_registration(
    tx: &Conn<'_>,
    caller: &Caller,
    reg: &register::Parsed,
) -> Result<Registered, ApiError> {
    // a daemon_id belongs to one member across its providers' rows, and
    // the workspace has a cap on runtimes: rules over the workspace's rows
    // (one row per provider is the schema's UNIQUE, and the upsert never
    // takes over another member's)
    crate::store::workspaces::lock(tx, reg.workspace_id)?;
    require_daemon_workspace(tx, caller, reg.workspace_id)?;
    if runtimes::daemon_owned_by_other(tx, reg.workspace_id, &reg.daemon_id, reg.owner)? {
        return Err(daemon_taken(&reg.daemon_id));
    }
    let rows: Vec<_> = reg.runtimes.iter().chain(&reg.failed).collect();
    register::check_capacity(tx, reg.workspace_id, &rows)?;
    let mut out = Vec::with_capacity(reg.runtimes.len());
    let mut folded = Vec::new();
    for row in &reg.runtimes {
        let runtime = upsert(tx, row)?;
        folded.extend(adopt_older(tx, &runtime, &reg.legacy)?);
        out.push(runtime);
    }
    for row in &reg.failed {
        upsert(tx, row)?;
    }
    let reconciled = match &reg.active {
        Some(keep) => Some(reconcile(tx, &out, keep)?),
        None => None,
    };
    let mut active_tasks = Vec::new();
    for runtime in &out {
        active_tasks.extend(tasks::active_on(tx, runtime.id)?);
    }
    // one list however many runtimes it names, as bounded as each
    active_tasks.truncate(tasks::MAX_ACTIVE_LISTED as usize);
    Ok(Registered {
        runtimes: out,
        folded,
        reconciled,
        active_tasks,
    })
}

/// Fails the dispatched and running tasks of `runtimes` that the daemon
/// did not list in `keep` (`runtime_recovery`, retried as their agents
/// allow): it registered again without them, so nothing runs them. Tasks
/// dispatched in the last [`tasks::RECONCILE_GRACE_SECS`] are kept.
fn reconcile(tx: &Conn<'_>, runtimes: &[Runtime], keep: &[TaskId]) -> Result<Failures, ApiError> {
    // what it claimed a moment ago may not be on its list yet
    let cutoff = tasks::reconcile_cutoff();
    let mut failed = Vec::new();
    for runtime in runtimes {
        loop {
            let batch = tasks::fail_orphans(tx, runtime.id, keep, Some(cutoff))?;
            let done = (batch.len() as i64) < crate::store::sweeps::BATCH;
            failed.extend(batch);
            if done {
                break;
            }
        }
    }
    Ok(Failures::settle(tx, failed)?)
}

/// Upserts every runtime of the daemon in one transaction (all or none),
/// records its failed profiles as offline runtimes, and moves over what
/// this machine registered before (see [`adopt_older`]). A daemon_id whose
/// runtimes belong to another member is a 409: the daemon route never
/// changes who owns a machine. A daemon that lists the tasks it still runs
/// (`active_task_ids`) has its runtimes' other dispatched and running
/// tasks failed as `runtime_recovery` in the same transaction; the reply's
/// `active_tasks` says which tasks are still its own.
async fn register(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: Caller,
    body: web::Json<register::RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let reg = register::parse(&body, &caller)?;
    let (workspace_id, daemon_id) = (reg.workspace_id, reg.daemon_id.clone());
    let registered = db
        .write(move |tx| write_registration(tx, &caller, &reg))
        .await?;
    events.publish(
        DAEMON_REGISTER,
        workspace_id,
        json!({"action": "register", "daemon_id": daemon_id, "runtimes": registered.runtimes}),
    );
    for id in registered.folded {
        events.publish(
            DAEMON_REGISTER,
            workspace_id,
            json!({"action": "delete", "runtime_id": id}),
        );
    }
    if let Some(reconciled) = &registered.reconciled {
        reconciled.publish(&events);
    }
    Ok(HttpResponse::Ok().json(RegisterResponse {
        runtimes: registered.runtimes,
        repos: Vec::new(),
        repos_version: REPOS_VERSION,
        settings: json!({}),
        active_tasks: registered.active_tasks,
    }))
}

#[derive(Deserialize)]
struct DeregisterRequest {
    #[serde(default)]
    runtime_ids: Vec<RuntimeId>,
    offline_reasons: Option<BTreeMap<String, Option<offline::ReasonIn>>>,
}

/// Marks the caller's runtimes offline, each with the reason the daemon
/// gave for it (`deregistered` when none); ids it cannot reach are skipped.
async fn deregister(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: Caller,
    body: web::Json<DeregisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let DeregisterRequest {
        runtime_ids,
        offline_reasons,
    } = body.into_inner();
    // a machine has a handful of runtimes: one request holds the writer
    // for a bounded time
    if runtime_ids.len() > MAX_RUNTIMES_PER_REGISTRATION
        || offline_reasons
            .as_ref()
            .is_some_and(|r| r.len() > MAX_RUNTIMES_PER_REGISTRATION)
    {
        return Err(ApiError::bad_request(format!(
            "a deregistration names at most {MAX_RUNTIMES_PER_REGISTRATION} runtimes"
        )));
    }
    let mut reasons = offline::parse(offline_reasons)?;
    let affected = db
        .write(move |tx| -> Result<_, ApiError> {
            let mut affected = Vec::new();
            for id in runtime_ids {
                match require_daemon_runtime(tx, &caller, id) {
                    Ok(runtime) => {
                        let reason = reasons
                            .remove(&id)
                            .unwrap_or_else(|| runtimes::reason(offline::DEREGISTERED));
                        runtimes::set_offline(tx, id, &reason)?;
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
    runtime_id: Option<RuntimeId>,
}

#[derive(Serialize)]
struct PendingPing {
    id: ProbeId,
}

#[derive(Serialize)]
struct PendingUpdate {
    id: ProbeId,
    target_version: String,
}

#[derive(Serialize)]
pub(crate) struct HeartbeatResponse {
    runtime_id: RuntimeId,
    status: &'static str,
    server_capabilities: &'static [&'static str],
    /// For the April 2026 daemon; today's has no pings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_ping: Option<PendingPing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_update: Option<PendingUpdate>,
    /// Sent by the heartbeat that brings an offline runtime back online:
    /// its dispatched and running tasks, still its daemon's own (a task the
    /// sweeper failed while the daemon was away is not here). Left out of
    /// the others, which stay one indexed read.
    #[serde(skip_serializing_if = "Option::is_none")]
    active_tasks: Option<Vec<ActiveTask>>,
}

/// Marks the runtime online and hands over any ping or update the UI asked
/// for; a heartbeat that brings the runtime back online also lists the
/// tasks still its daemon's own (`active_tasks`). A runtime that is gone answers 404 `runtime not found`, telling the
/// daemon to register again. An online runtime's new last-seen time goes
/// through the heartbeat group commit; bringing a runtime back online, or
/// handing over a probe, is written at once (bringing it online clears its
/// offline reason).
async fn heartbeat(
    db: web::Data<Store>,
    heartbeats: web::Data<Heartbeats>,
    caller: Caller,
    body: web::Json<HeartbeatRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = body
        .runtime_id
        .ok_or_else(|| ApiError::bad_request("runtime_id is required"))?;
    let reply = beat(&db, &heartbeats, caller, id).await?;
    Ok(HttpResponse::Ok().json(reply))
}

/// What [`heartbeat`] does, shared with the daemon socket's
/// `daemon:heartbeat`. Most heartbeats only read: the runtime is online
/// and nothing waits for its daemon.
pub(crate) async fn beat(
    db: &Store,
    heartbeats: &Heartbeats,
    caller: Caller,
    id: RuntimeId,
) -> Result<HeartbeatResponse, ApiError> {
    let again = caller.clone();
    let (runtime, pending) = db
        .read(move |conn| -> Result<_, ApiError> {
            let runtime = require_daemon_runtime(conn, &caller, id)?;
            Ok((runtime, probes::pending_kinds(conn, id)?))
        })
        .await?;
    let online = runtime.status == RuntimeStatus::Online;
    if online {
        heartbeats.record(id, Timestamp::now());
    }
    let (ping, update, active_tasks) = if online && pending.is_empty() {
        (None, None, None)
    } else {
        // checked again in the write, so a member removed meanwhile cannot
        // be undone by their daemon
        db.write(move |tx| -> Result<_, ApiError> {
            require_daemon_runtime(tx, &again, id)?;
            // back online: its daemon was away, and learns which of its
            // tasks are still its own
            let back = if online {
                None
            } else if runtimes::heartbeat(tx, id)? {
                Some(tasks::active_on(tx, id)?)
            } else {
                return Err(ApiError::not_found("runtime not found"));
            };
            let take = |kind| -> Result<_, ApiError> {
                if pending.contains(&kind) {
                    Ok(probes::take_pending(tx, kind, id)?)
                } else {
                    Ok(None)
                }
            };
            Ok((take(ProbeKind::Ping)?, take(ProbeKind::Update)?, back))
        })
        .await?
    };
    Ok(HeartbeatResponse {
        runtime_id: id,
        status: "ok",
        server_capabilities: SERVER_CAPABILITIES,
        pending_ping: ping.map(|p| PendingPing { id: p.id }),
        pending_update: update.map(|p| PendingUpdate {
            id: p.id,
            target_version: p.target_version.unwrap_or_default(),
        }),
        active_tasks,
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
    /// `running` while they progress. Texts are cut to what is kept.
    fn outcome(self, kind: ProbeKind) -> Result<Outcome, ApiError> {
        let status = match (self.status.as_deref().map(str::trim), kind) {
            (Some("completed"), _) => ProbeStatus::Completed,
            (Some("failed"), _) => ProbeStatus::Failed,
            (Some("running"), ProbeKind::Update) => ProbeStatus::Running,
            _ => {
                return Err(ApiError::bad_request(match kind {
                    ProbeKind::Ping => "status must be completed or failed",
                    ProbeKind::Update => "status must be running, completed or failed",
                }))
            }
        };
        if self.duration_ms.is_some_and(|d| d < 0) {
            return Err(ApiError::bad_request("duration_ms must not be negative"));
        }
        Ok(Outcome {
            status,
            output: clip(self.output.unwrap_or_default()),
            error: clip(self.error.unwrap_or_default()),
            duration_ms: self.duration_ms,
        })
    }
}

/// A daemon's result for a probe of one of its runtimes: 404 for a probe
/// it cannot see, 409 once the probe has ended (or timed out).
async fn probe_result(
    kind: ProbeKind,
    db: web::Data<Store>,
    caller: Caller,
    path: web::Path<(RuntimeId, ProbeId)>,
    body: web::Json<ResultRequest>,
) -> Result<HttpResponse, ApiError> {
    let (runtime, id) = path.into_inner();
    let outcome = body.into_inner().outcome(kind)?;
    let probe = db
        .write(move |tx| -> Result<_, ApiError> {
            require_daemon_runtime(tx, &caller, runtime)?;
            match probes::finish(tx, kind, runtime, id, outcome)? {
                Finished::Done(probe) => Ok(probe),
                Finished::NotFound => Err(not_found(kind)),
                Finished::AlreadyEnded(status) => Err(already_ended(kind, status)),
            }
        })
        .await?;
    Ok(HttpResponse::Ok().json(probe))
}

async fn ping_result(
    db: web::Data<Store>,
    caller: Caller,
    path: web::Path<(RuntimeId, ProbeId)>,
    body: web::Json<ResultRequest>,
) -> Result<HttpResponse, ApiError> {
    probe_result(ProbeKind::Ping, db, caller, path, body).await
}

async fn update_result(
    db: web::Data<Store>,
    caller: Caller,
    path: web::Path<(RuntimeId, ProbeId)>,
    body: web::Json<ResultRequest>,
) -> Result<HttpResponse, ApiError> {
    probe_result(ProbeKind::Update, db, caller, path, body).await
}
