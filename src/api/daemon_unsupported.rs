//! What the current daemon asks about things agenthub does not have, with
//! the answers that let it carry on: a workspace has no repositories and
//! no custom runtime profiles, and chat sessions and autopilot runs do not
//! exist here.
//!
//! The two collection checks must not answer 404: the daemon reads a 404
//! about a chat session as "deleted, reclaim its directory now" and one
//! about an autopilot run as "gone, reclaim it by age". It keeps the
//! directory on a status it does not know, so they answer `unsupported`;
//! a directory left by another server is then never deleted on agenthub's
//! word.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::access::require_daemon_workspace;
use crate::auth::Caller;
use crate::domain::{AutopilotRunId, ChatSessionId, Timestamp, WorkspaceId};
use crate::error::ApiError;
use crate::store::Store;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/daemon/workspaces/{id}/repos", web::get().to(repos))
        .route(
            "/daemon/workspaces/{id}/runtime-profiles",
            web::get().to(runtime_profiles),
        )
        .route(
            "/daemon/chat-sessions/{id}/gc-check",
            web::get().to(chat_session_gc_check),
        )
        .route(
            "/daemon/autopilot-runs/{id}/gc-check",
            web::get().to(autopilot_run_gc_check),
        );
}

/// 404 `workspace not found` unless the caller reaches the workspace on
/// the daemon API.
async fn require_workspace(
    db: &Store,
    caller: Caller,
    workspace: WorkspaceId,
) -> Result<(), ApiError> {
    db.read(move |conn| require_daemon_workspace(conn, &caller, workspace))
        .await
}

#[derive(Serialize)]
struct Repos {
    workspace_id: WorkspaceId,
    repos: Vec<serde_json::Value>,
    repos_version: &'static str,
}

/// No repositories: a daemon asked to check one out says it is not
/// configured for the workspace.
async fn repos(
    db: web::Data<Store>,
    caller: Caller,
    path: web::Path<WorkspaceId>,
) -> Result<HttpResponse, ApiError> {
    let workspace_id = path.into_inner();
    require_workspace(&db, caller, workspace_id).await?;
    Ok(HttpResponse::Ok().json(Repos {
        workspace_id,
        repos: Vec::new(),
        repos_version: "",
    }))
}

#[derive(Serialize)]
struct RuntimeProfiles {
    workspace_id: WorkspaceId,
    runtime_profiles: Vec<serde_json::Value>,
}

/// No custom runtime profiles: the daemon registers the agent CLIs it
/// found on the machine.
async fn runtime_profiles(
    db: web::Data<Store>,
    caller: Caller,
    path: web::Path<WorkspaceId>,
) -> Result<HttpResponse, ApiError> {
    let workspace_id = path.into_inner();
    require_workspace(&db, caller, workspace_id).await?;
    Ok(HttpResponse::Ok().json(RuntimeProfiles {
        workspace_id,
        runtime_profiles: Vec::new(),
    }))
}

/// The status a daemon's collection does not know, so it keeps the
/// directory.
const UNSUPPORTED: &str = "unsupported";

#[derive(Serialize)]
struct ChatSessionGcStatus {
    status: &'static str,
    updated_at: Option<Timestamp>,
}

async fn chat_session_gc_check(_caller: Caller, _path: web::Path<ChatSessionId>) -> HttpResponse {
    HttpResponse::Ok().json(ChatSessionGcStatus {
        status: UNSUPPORTED,
        updated_at: None,
    })
}

#[derive(Serialize)]
struct AutopilotRunGcStatus {
    status: &'static str,
    completed_at: Option<Timestamp>,
}

async fn autopilot_run_gc_check(_caller: Caller, _path: web::Path<AutopilotRunId>) -> HttpResponse {
    HttpResponse::Ok().json(AutopilotRunGcStatus {
        status: UNSUPPORTED,
        completed_at: None,
    })
}
