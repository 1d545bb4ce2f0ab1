//! `GET /api/daemon/workspaces`: the workspaces a daemon works in, in the
//! shape today's daemon decodes (`[{id, name}]`). The daemon polls it with
//! `If-None-Match`, and a 404 would switch it to `GET /api/workspaces`
//! (which refuses daemon tokens) for good, so this never answers 404.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::access::daemon_reaches;
use crate::auth::Caller;
use crate::domain::WorkspaceId;
use crate::error::ApiError;
use crate::store::Conn;
use crate::store::{workspaces, Store};

/// A workspace as the daemon lists it.
#[derive(Serialize)]
struct DaemonWorkspace {
    id: WorkspaceId,
    name: String,
}

/// The workspaces a daemon works in: a PAT's user's, or a daemon token's
/// one workspace while the member who minted it still belongs to it.
fn daemon_workspaces(conn: &Conn<'_>, caller: &Caller) -> Result<Vec<DaemonWorkspace>, ApiError> {
    let listed = match caller {
        Caller::User { user_id } => workspaces::list_for_user(conn, *user_id)?,
        // a task token works in no workspace of its own
        Caller::Task(_) => Vec::new(),
        Caller::Daemon(daemon) => {
            if daemon_reaches(conn, caller, daemon.workspace_id)? {
                workspaces::get(conn, daemon.workspace_id)?
                    .into_iter()
                    .collect()
            } else {
                Vec::new()
            }
        }
    };
    Ok(listed
        .into_iter()
        .map(|w| DaemonWorkspace {
            id: w.id,
            name: w.name,
        })
        .collect())
}

/// Whether `If-None-Match` names `etag` (or `*`).
fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == "*" || tag.trim() == etag)
}

/// `[{id, name}]`, with an ETag: a daemon polls this, and an unchanged
/// list is a 304 without a body.
pub(super) async fn list(
    db: web::Data<Store>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let listed = db
        .read(move |conn| daemon_workspaces(conn, &caller))
        .await?;
    let body = serde_json::to_vec(&listed)
        .map_err(|e| ApiError::internal(format!("encoding the daemon's workspaces: {e}")))?;
    let etag = format!("W/\"{:x}\"", Sha256::digest(&body));
    let unchanged = not_modified(&req, &etag);
    let mut reply = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    reply
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "private, no-cache"));
    Ok(if unchanged {
        reply.finish()
    } else {
        reply.content_type("application/json").body(body)
    })
}
