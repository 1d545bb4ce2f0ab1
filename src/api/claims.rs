//! Claims: a daemon takes the next task of one runtime
//! (`POST /api/daemon/runtimes/{id}/tasks/claim`) or of several of its
//! machine's runtimes at once (`POST /api/daemon/tasks/claim`).
//!
//! Each claim runs in one write transaction: the task is dispatched, its
//! agent's status reconciled and a task-scoped token (`mat_`) minted for the
//! agent the daemon starts, so concurrent claims never share a task or push
//! an agent past `max_concurrent_tasks`. The token is in the reply once;
//! only its hash is stored.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::access::{daemon_runtime, require_daemon_runtime};
use crate::auth::Caller;
use crate::domain::{AgentId, AgentStatus, RuntimeId};
use crate::error::ApiError;
use crate::events::{Audience, EventBus};
use crate::store::agents::{self, Agent};
use crate::store::tasks::{self, Task};
use crate::store::Conn;
use crate::store::{tokens, Store};

/// Most tasks one batch claim hands out (a daemon asks for its free slots).
pub const MAX_BATCH_TASKS: i64 = 32;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/daemon/runtimes/{id}/tasks/claim", web::post().to(claim))
        .route("/daemon/tasks/claim", web::post().to(claim_batch));
}

/// What a daemon gets for one claimed task: the task, the agent to run it
/// as, and the agent's task-scoped token.
#[derive(Serialize)]
pub struct ClaimedTask {
    #[serde(flatten)]
    task: Task,
    agent: Option<ClaimedAgent>,
    auth_token: String,
}

#[derive(Serialize)]
struct ClaimedAgent {
    id: AgentId,
    name: String,
    instructions: String,
}

/// A task dispatched inside a write transaction, with what to announce
/// once it commits.
pub(crate) struct Dispatched {
    task: Task,
    agent: Option<Agent>,
    agent_status: Option<AgentStatus>,
    token: String,
}

/// Dispatches the next claimable task of `runtimes` (already authorized),
/// if any, and mints its task token.
pub(crate) fn dispatch_next(
    tx: &Conn<'_>,
    runtimes: &[RuntimeId],
) -> Result<Option<Dispatched>, ApiError> {
    let Some(task) = tasks::claim_any(tx, runtimes)? else {
        return Ok(None);
    };
    let agent = match task.agent_id {
        Some(id) => agents::get(tx, id)?,
        None => None,
    };
    let agent_status = match &agent {
        Some(agent) => agents::reconcile_status(tx, agent.id)?,
        None => None,
    };
    let token = tokens::create_task_token(tx, task.id, task.workspace_id)?;
    Ok(Some(Dispatched {
        task,
        agent,
        agent_status,
        token,
    }))
}

/// Publishes `task:dispatched` (and the agent's status) after commit and
/// turns the dispatch into the daemon's reply.
pub(crate) fn announce(events: &EventBus, dispatched: Dispatched) -> ClaimedTask {
    let Dispatched {
        task,
        agent,
        agent_status,
        token,
    } = dispatched;
    let audience = agent
        .as_ref()
        .map_or(Audience::MANAGERS, Audience::of_agent);
    events.task(
        "task:dispatched",
        audience,
        task.workspace_id,
        task.id,
        task.agent_id,
    );
    if let (Some(agent), Some(status)) = (&agent, agent_status) {
        events.agent_status(audience, task.workspace_id, agent.id, status);
    }
    ClaimedTask {
        task,
        agent: agent.map(|a| ClaimedAgent {
            id: a.id,
            name: a.name,
            instructions: a.instructions,
        }),
        auth_token: token,
    }
}

#[derive(Serialize)]
struct ClaimResponse {
    task: Option<ClaimedTask>,
}

async fn claim(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: Caller,
    path: web::Path<RuntimeId>,
) -> Result<HttpResponse, ApiError> {
    let runtime = path.into_inner();
    let dispatched = db
        .write(move |tx| -> Result<_, ApiError> {
            require_daemon_runtime(tx, &caller, runtime)?;
            dispatch_next(tx, &[runtime])
        })
        .await?;
    Ok(HttpResponse::Ok().json(ClaimResponse {
        task: dispatched.map(|d| announce(&events, d)),
    }))
}

/// A batch claim as the daemon sends it (over HTTP or its socket).
#[derive(Deserialize)]
pub(crate) struct BatchClaim {
    daemon_id: Option<String>,
    #[serde(default)]
    runtime_ids: Vec<String>,
    #[serde(default)]
    max_tasks: i64,
}

/// A batch claim that passed its checks.
pub(crate) struct Wanted {
    pub daemon_id: String,
    /// At most [`MAX_BATCH_TASKS`].
    pub max_tasks: i64,
    /// The well-formed ids it names, each once.
    pub runtimes: Vec<RuntimeId>,
}

impl BatchClaim {
    /// The request's checks, the same on every transport: a daemon_id (the
    /// token's own, for a daemon token), a non-negative `max_tasks`, at most
    /// as many runtimes as a registration carries. Malformed ids are
    /// skipped, not refused (a daemon may hold stale ones).
    pub(crate) fn checked(self, caller: &Caller) -> Result<Wanted, ApiError> {
        let daemon_id = super::short_text(self.daemon_id.as_deref(), "daemon_id")?;
        if daemon_id.is_empty() {
            return Err(ApiError::bad_request("daemon_id is required"));
        }
        if let Caller::Daemon(daemon) = caller {
            if daemon.daemon_id != daemon_id {
                return Err(ApiError::forbidden("daemon_id does not match token"));
            }
        }
        if self.max_tasks < 0 {
            return Err(ApiError::bad_request("max_tasks must not be negative"));
        }
        let limit = super::daemon::MAX_RUNTIMES_PER_REGISTRATION;
        if self.runtime_ids.len() > limit {
            return Err(ApiError::bad_request(format!(
                "runtime_ids lists at most {limit} runtimes"
            )));
        }
        let mut runtimes: Vec<RuntimeId> = Vec::new();
        for id in self
            .runtime_ids
            .iter()
            .filter_map(|raw| raw.trim().parse().ok())
        {
            if !runtimes.contains(&id) {
                runtimes.push(id);
            }
        }
        Ok(Wanted {
            daemon_id,
            max_tasks: self.max_tasks.min(MAX_BATCH_TASKS),
            runtimes,
        })
    }
}

/// Dispatches up to `wanted.max_tasks` tasks of the runtimes it names that
/// belong to its daemon_id and that the caller acts for (checked in this
/// transaction; the others are skipped: a daemon may still name a runtime
/// deleted a moment ago).
pub(crate) fn dispatch_batch(
    tx: &Conn<'_>,
    caller: &Caller,
    wanted: &Wanted,
) -> Result<Vec<Dispatched>, ApiError> {
    let mut runtimes = Vec::new();
    for &id in &wanted.runtimes {
        let ours = daemon_runtime(tx, caller, id)?
            .is_some_and(|r| r.daemon_id.as_deref() == Some(wanted.daemon_id.as_str()));
        if ours {
            runtimes.push(id);
        }
    }
    let mut out = Vec::new();
    while (out.len() as i64) < wanted.max_tasks && !runtimes.is_empty() {
        match dispatch_next(tx, &runtimes)? {
            Some(d) => out.push(d),
            None => break,
        }
    }
    Ok(out)
}

#[derive(Serialize)]
struct BatchReply {
    tasks: Vec<ClaimedTask>,
}

/// `{daemon_id, runtime_ids, max_tasks}` → `{tasks: [...]}`: up to
/// `max_tasks` (at most [`MAX_BATCH_TASKS`]) tasks of the listed runtimes
/// of that machine, in one transaction, by the same priority and
/// concurrency rules as a single claim.
async fn claim_batch(
    db: web::Data<Store>,
    events: web::Data<EventBus>,
    caller: Caller,
    body: web::Json<BatchClaim>,
) -> Result<HttpResponse, ApiError> {
    let wanted = body.into_inner().checked(&caller)?;
    let dispatched = db
        .write(move |tx| dispatch_batch(tx, &caller, &wanted))
        .await?;
    let tasks = dispatched
        .into_iter()
        .map(|d| announce(&events, d))
        .collect();
    Ok(HttpResponse::Ok().json(BatchReply { tasks }))
}
