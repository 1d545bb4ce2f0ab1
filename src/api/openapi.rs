//! `GET /api/openapi.json`: an OpenAPI 3.1 description of every route, so
//! external fuzzers and clients can be pointed at the server. Built from
//! one table; `tests/openapi.rs` checks the table against the routes the
//! handlers register.

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

use Auth::{Daemon, User, Workspace};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(document));
}

/// Who may call a route.
#[derive(Clone, Copy)]
enum Auth {
    None,
    /// personal access token
    User,
    /// personal access token, workspace from X-Workspace-ID / ?workspace_id=
    Workspace,
    /// daemon token or personal access token
    Daemon,
}

struct Route {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: Auth,
    query: &'static [&'static str],
    /// Whether the route reads a JSON body.
    body: bool,
}

const fn route(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: Auth,
    query: &'static [&'static str],
    body: bool,
) -> Route {
    Route {
        method,
        path,
        summary,
        auth,
        query,
        body,
    }
}

#[rustfmt::skip]
const ROUTES: &[Route] = &[
    route("get", "/health", "Liveness", Auth::None, &[], false),
    route("get", "/metrics", "Prometheus metrics", Auth::None, &[], false),
    route("get", "/api/openapi.json", "This document", Auth::None, &[], false),
    route("get", "/api/me", "The caller", User, &[], false),
    route("get", "/api/tokens", "Own personal access tokens", User, &[], false),
    route("post", "/api/tokens", "Create a personal access token", User, &[], true),
    route("delete", "/api/tokens/{id}", "Revoke a personal access token", User, &[], false),
    route("get", "/api/workspaces", "Workspaces of the caller", User, &[], false),
    route("post", "/api/workspaces", "Create a workspace", User, &[], true),
    route("get", "/api/workspaces/{id}", "A workspace", User, &[], false),
    route("get", "/api/workspaces/{id}/members", "Members", User, &[], false),
    route("post", "/api/workspaces/{id}/members", "Invite someone by email", User, &[], true),
    route("patch", "/api/workspaces/{id}/members/{member_id}", "Change a role", User, &[], true),
    route("put", "/api/workspaces/{id}/members/{member_id}", "Change a role", User, &[], true),
    route("delete", "/api/workspaces/{id}/members/{member_id}", "Remove a member", User, &[], false),
    route("post", "/api/workspaces/{id}/daemon-tokens", "Mint a daemon token", User, &[], true),
    route("get", "/api/workspaces/{id}/invitations", "Pending invitations of a workspace", User, &[], false),
    route("delete", "/api/workspaces/{id}/invitations/{invitation_id}", "Revoke an invitation", User, &[], false),
    route("get", "/api/invitations", "The caller's pending invitations", User, &[], false),
    route("post", "/api/invitations/{id}/accept", "Accept an invitation", User, &[], false),
    route("post", "/api/invitations/{id}/decline", "Decline an invitation", User, &[], false),
    route("post", "/api/daemon/register", "Register a daemon's runtimes", Daemon, &[], true),
    route("post", "/api/daemon/deregister", "Mark runtimes offline", Daemon, &[], true),
    route("post", "/api/daemon/heartbeat", "Heartbeat", Daemon, &[], true),
    route("post", "/api/daemon/runtimes/{id}/ping/{ping_id}/result", "Ping result", Daemon, &[], true),
    route("post", "/api/daemon/runtimes/{id}/update/{update_id}/result", "Update result", Daemon, &[], true),
    route("post", "/api/daemon/runtimes/{id}/tasks/claim", "Claim the next task", Daemon, &[], false),
    route("get", "/api/daemon/runtimes/{id}/tasks/pending", "Queued and dispatched tasks", Daemon, &[], false),
    route("get", "/api/daemon/tasks/{id}/status", "A task's status", Daemon, &[], false),
    route("post", "/api/daemon/tasks/{id}/start", "dispatched → running", Daemon, &[], false),
    route("post", "/api/daemon/tasks/{id}/progress", "Relay progress", Daemon, &[], true),
    route("post", "/api/daemon/tasks/{id}/complete", "running → completed", Daemon, &[], true),
    route("post", "/api/daemon/tasks/{id}/fail", "dispatched|running → failed", Daemon, &[], true),
    route("post", "/api/daemon/tasks/{id}/messages", "Relay messages", Daemon, &[], true),
    route("get", "/api/runtimes", "Runtimes of the workspace", Workspace, &["owner"], false),
    route("delete", "/api/runtimes/{id}", "Delete a runtime", User, &[], false),
    route("get", "/api/runtimes/{id}/activity", "Task starts per UTC hour", User, &[], false),
    route("post", "/api/runtimes/{id}/ping", "Ping a runtime", User, &[], false),
    route("get", "/api/runtimes/{id}/ping/{ping_id}", "A ping", User, &[], false),
    route("post", "/api/runtimes/{id}/update", "Ask a runtime to update", User, &[], true),
    route("get", "/api/runtimes/{id}/update/{update_id}", "An update", User, &[], false),
    route("get", "/api/agents", "Agents of the workspace", Workspace, &["include_archived"], false),
    route("post", "/api/agents", "Create an agent", Workspace, &[], true),
    route("get", "/api/agents/{id}", "An agent", User, &[], false),
    route("put", "/api/agents/{id}", "Edit an agent", User, &[], true),
    route("post", "/api/agents/{id}/archive", "Archive an agent", User, &[], false),
    route("post", "/api/agents/{id}/restore", "Restore an agent", User, &[], false),
    route("get", "/api/agents/{id}/tasks", "An agent's tasks", User, &[], false),
    route("post", "/api/agents/{id}/tasks", "Queue a task", User, &[], true),
    route("post", "/api/tasks/{id}/cancel", "Cancel a task", User, &[], false),
    route("get", "/api/events", "Live workspace events (SSE)", Workspace, &[], false),
    route("post", "/api/daemon/tasks/{id}/usage", "Report a task's token usage", Daemon, &[], true),
    route("post", "/api/daemon/runtimes/{id}/usage", "Report a runtime's daily usage", Daemon, &[], true),
    route("get", "/api/runtimes/{id}/usage", "A runtime's daily usage", User, &["days"], false),
    route("get", "/api/usage/daily", "Workspace usage per day and model", Workspace, &["days", "tz"], false),
    route("get", "/api/usage/summary", "Workspace usage per model", Workspace, &["days", "tz"], false),
];

fn operation(r: &Route) -> Value {
    let mut params: Vec<Value> = Vec::new();
    let mut rest = r.path;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 1..start + len];
        params.push(json!({"name": name, "in": "path", "required": true,
                           "schema": {"type": "string", "format": "uuid"}}));
        rest = &rest[start + len..];
    }
    if let Auth::Workspace = r.auth {
        params.push(
            json!({"name": "X-Workspace-ID", "in": "header", "required": false,
                           "schema": {"type": "string", "format": "uuid"}}),
        );
        params.push(
            json!({"name": "workspace_id", "in": "query", "required": false,
                           "schema": {"type": "string", "format": "uuid"}}),
        );
    }
    for q in r.query {
        params.push(
            json!({"name": q, "in": "query", "required": false, "schema": {"type": "string"}}),
        );
    }
    let error = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut op = json!({
        "summary": r.summary,
        "parameters": params,
        "responses": {
            "200": {"description": "success", "content": {"application/json": {"schema": {}}}},
            "400": error, "401": error, "403": error, "404": error, "409": error, "413": error,
        },
    });
    let security = match r.auth {
        Auth::None => json!([]),
        User | Workspace => json!([{"personal_access_token": []}]),
        Daemon => json!([{"personal_access_token": []}, {"daemon_token": []}]),
    };
    op["security"] = security;
    if r.body {
        op["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": {"type": "object"}}}});
    }
    op
}

/// The document, built from [`ROUTES`].
pub fn spec() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method] = operation(r);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "agenthub", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "personal_access_token": {"type": "http", "scheme": "bearer", "description": "mul_ + 40 hex"},
                "daemon_token": {"type": "http", "scheme": "bearer", "description": "mdt_ + 40 hex"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            },
        },
    })
}

async fn document() -> HttpResponse {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    HttpResponse::Ok().json(DOCUMENT.get_or_init(spec))
}
