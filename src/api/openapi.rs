//! `GET /api/openapi.json`: an OpenAPI 3.1 description of every route, so
//! external fuzzers and clients can be pointed at the server. Built from
//! one table: per route its method, path, who may call it, the body it
//! reads and the status and body of its success reply. The body schemas
//! live in `openapi/schemas.rs` (replies) and `openapi/requests.rs`.
//! `tests/openapi.rs` checks the table against the routes the handlers
//! register, and real requests and replies against the schemas.

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

use Auth::{Daemon, User, Workspace};
use Schema::{AnyObject, Empty, List, Nothing, Ref, Text};

mod daemon;
mod requests;
mod schemas;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(document));
}

/// Who may call a route.
#[derive(Clone, Copy)]
enum Auth {
    None,
    /// personal access token
    User,
    /// personal access token, workspace from X-Workspace-ID /
    /// X-Workspace-Slug / ?workspace_id=
    Workspace,
    /// daemon token or personal access token
    Daemon,
}

/// A request or reply body.
#[derive(Clone, Copy)]
enum Schema {
    /// JSON: a component of `#/components/schemas` (see `schemas.rs`)
    Ref(&'static str),
    /// JSON: an array of that component
    List(&'static str),
    /// JSON: any object
    AnyObject,
    /// not JSON: text of this content type
    Text(&'static str),
    /// no body at all (204)
    Empty,
    /// no body: the reply switches to another protocol
    Nothing,
}

struct Route {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: Auth,
    query: &'static [&'static str],
    /// The JSON body the route reads, and whether it may be left out.
    body: Option<(Schema, bool)>,
    /// Status and body of a successful reply.
    status: u16,
    reply: Schema,
    /// Answers 304 without a body when `If-None-Match` names its ETag.
    etag: bool,
}

const fn route(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: Auth,
    reply: Schema,
) -> Route {
    Route {
        method,
        path,
        summary,
        auth,
        query: &[],
        body: None,
        status: 200,
        reply,
        etag: false,
    }
}

const fn get(path: &'static str, summary: &'static str, auth: Auth, reply: Schema) -> Route {
    route("get", path, summary, auth, reply)
}

const fn post(path: &'static str, summary: &'static str, auth: Auth, reply: Schema) -> Route {
    route("post", path, summary, auth, reply)
}

const fn delete(path: &'static str, summary: &'static str, auth: Auth) -> Route {
    route("delete", path, summary, auth, Ref("Status"))
}

impl Route {
    const fn query(mut self, names: &'static [&'static str]) -> Route {
        self.query = names;
        self
    }

    /// Reads a JSON body of this schema.
    const fn body(mut self, schema: &'static str) -> Route {
        self.body = Some((Ref(schema), true));
        self
    }

    /// Reads a JSON body of this schema, or none at all.
    const fn optional_body(mut self, schema: &'static str) -> Route {
        self.body = Some((Ref(schema), false));
        self
    }

    /// Answers 201 Created.
    const fn created(mut self) -> Route {
        self.status = 201;
        self
    }

    /// Sends an ETag, and 304 for a matching `If-None-Match`.
    const fn etag(mut self) -> Route {
        self.etag = true;
        self
    }

    /// Answers 204 No Content.
    const fn no_content(mut self) -> Route {
        self.status = 204;
        self.reply = Empty;
        self
    }

    /// Answers 101 Switching Protocols: a WebSocket from then on.
    const fn upgrades(mut self) -> Route {
        self.status = 101;
        self.reply = Nothing;
        self
    }
}

#[rustfmt::skip]
const ROUTES: &[Route] = &[
    get("/health", "Liveness", Auth::None, Ref("Status")),
    get("/metrics", "Prometheus metrics", Auth::None, Text("text/plain")),
    get("/api/openapi.json", "This document", Auth::None, AnyObject),
    get("/api/me", "The caller", User, Ref("User")),
    get("/api/tokens", "Own personal access tokens", User, List("Token")),
    post("/api/tokens", "Create a personal access token", User, Ref("NewToken")).body("CreateToken").created(),
    delete("/api/tokens/{id}", "Revoke a personal access token", User),
    get("/api/workspaces", "Workspaces of the caller", User, List("Workspace")),
    post("/api/workspaces", "Create a workspace", User, Ref("Workspace")).body("CreateWorkspace").created(),
    get("/api/workspaces/{id}", "A workspace", User, Ref("Workspace")),
    route("patch", "/api/workspaces/{id}", "Change a workspace's name, description or time zone", User, Ref("Workspace")).body("WorkspaceSettings"),
    route("put", "/api/workspaces/{id}", "Change a workspace's name, description or time zone", User, Ref("Workspace")).body("WorkspaceSettings"),
    get("/api/workspaces/{id}/members", "Members", User, List("Member")),
    post("/api/workspaces/{id}/members", "Invite someone by email", User, Ref("Invitation")).body("Invite").created(),
    route("patch", "/api/workspaces/{id}/members/{member_id}", "Change a role", User, Ref("Member")).body("ChangeRole"),
    route("put", "/api/workspaces/{id}/members/{member_id}", "Change a role", User, Ref("Member")).body("ChangeRole"),
    delete("/api/workspaces/{id}/members/{member_id}", "Remove a member", User),
    post("/api/workspaces/{id}/daemon-tokens", "Mint a daemon token", User, Ref("DaemonToken")).body("CreateDaemonToken").created(),
    get("/api/workspaces/{id}/invitations", "Pending invitations of a workspace", User, List("Invitation")),
    delete("/api/workspaces/{id}/invitations/{invitation_id}", "Revoke an invitation", User),
    get("/api/invitations", "The caller's pending invitations", User, List("Invitation")),
    post("/api/invitations/{id}/accept", "Accept an invitation", User, Ref("Member")),
    post("/api/invitations/{id}/decline", "Decline an invitation", User, Ref("Invitation")),
    post("/api/daemon/register", "Register a daemon's runtimes", Daemon, Ref("Registered")).body("Register"),
    post("/api/daemon/deregister", "Mark runtimes offline", Daemon, Ref("Status")).body("Deregister"),
    post("/api/daemon/heartbeat", "Heartbeat", Daemon, Ref("Heartbeat")).body("HeartbeatRequest"),
    get("/api/daemon/workspaces", "The daemon's workspaces (ETag; 304 when unchanged)", Daemon, List("DaemonWorkspace")).etag(),
    post("/api/daemon/runtimes/{id}/ping/{ping_id}/result", "Ping result", Daemon, Ref("Ping")).body("PingResult"),
    post("/api/daemon/runtimes/{id}/update/{update_id}/result", "Update result", Daemon, Ref("Update")).body("UpdateResult"),
    post("/api/daemon/runtimes/{id}/tasks/claim", "Claim the next task", Daemon, Ref("Claim")),
    post("/api/daemon/tasks/claim", "Claim up to max_tasks tasks of a machine's runtimes", Daemon, Ref("BatchClaimed")).body("BatchClaim"),
    get("/api/daemon/ws", "The daemon's control socket (WebSocket): wake-ups, heartbeats, tasks.claim", Daemon, Nothing).query(&["runtime_ids"]).upgrades(),
    get("/api/daemon/runtimes/{id}/tasks/pending", "Queued and dispatched tasks", Daemon, List("Task")),
    get("/api/daemon/tasks/{id}/status", "A task's status", Daemon, Ref("TaskStatus")),
    post("/api/daemon/tasks/{id}/start", "dispatched → running", Daemon, Ref("Task")),
    post("/api/daemon/tasks/{id}/progress", "Relay progress", Daemon, Ref("Status")).body("Progress"),
    post("/api/daemon/tasks/{id}/complete", "running → completed", Daemon, Ref("Task")).optional_body("TaskResult"),
    post("/api/daemon/tasks/{id}/fail", "dispatched|running → failed", Daemon, Ref("Task")).optional_body("TaskFailure"),
    post("/api/daemon/tasks/{id}/messages", "Store transcript messages (redacted, once per seq)", Daemon, Ref("Status")).body("Messages"),
    get("/api/daemon/tasks/{id}/messages", "A task's transcript, by seq (paginated)", Daemon, List("TaskMessage")).query(&["after_seq", "since", "limit"]),
    get("/api/runtimes", "Runtimes of the workspace", Workspace, List("Runtime")).query(&["owner"]),
    delete("/api/runtimes/{id}", "Delete a runtime", User),
    route("patch", "/api/runtimes/{id}", "Set who may bind agents to it, its capacity and its machine's (its owner) or its name", User, Ref("Runtime")).body("RuntimeSettings"),
    post("/api/runtimes/{id}/claim", "Take an ownerless runtime", User, Ref("Runtime")),
    post("/api/runtimes/{id}/unbind-agents-and-delete", "Unbind its agents and delete it, in one transaction", User, Ref("Unbound")).body("UnbindAgents"),
    get("/api/runtimes/{id}/activity", "Task starts per hour of the day, in UTC or a zone", User, List("HourCount")).query(&["tz"]),
    post("/api/runtimes/{id}/ping", "Ping a runtime", User, Ref("Ping")),
    get("/api/runtimes/{id}/ping/{ping_id}", "A ping", User, Ref("Ping")),
    post("/api/runtimes/{id}/update", "Ask a runtime to update", User, Ref("Update")).body("StartUpdate"),
    get("/api/runtimes/{id}/update/{update_id}", "An update", User, Ref("Update")),
    get("/api/agents", "Agents of the workspace", Workspace, List("Agent")).query(&["include_archived"]),
    post("/api/agents", "Create an agent", Workspace, Ref("Agent")).body("CreateAgent").created(),
    get("/api/agents/{id}", "An agent", User, Ref("Agent")),
    route("put", "/api/agents/{id}", "Edit an agent", User, Ref("Agent")).body("EditAgent"),
    post("/api/agents/{id}/archive", "Archive an agent", User, Ref("Agent")),
    post("/api/agents/{id}/restore", "Restore an agent", User, Ref("Agent")),
    get("/api/agents/{id}/tasks", "An agent's tasks", User, List("Task")),
    post("/api/agents/{id}/tasks", "Queue a task (and whether its runtime is online)", User, Ref("QueuedTask")).body("CreateTask").created(),
    post("/api/tasks/{id}/cancel", "Cancel a task", User, Ref("Task")),
    post("/api/tasks/{id}/rerun", "Queue a finished task's work again (its next attempt)", User, Ref("QueuedTask")).created(),
    get("/api/tasks/{id}/messages", "A task's transcript, by seq (paginated)", User, List("TaskMessage")).query(&["after_seq", "since", "limit"]),
    get("/api/events", "Live workspace events (SSE)", Workspace, Text("text/event-stream")),
    post("/api/daemon/tasks/{id}/usage", "Report a task's token usage", Daemon, Ref("Status")).body("TaskUsageReport"),
    post("/api/daemon/runtimes/{id}/usage", "Report a runtime's daily usage", Daemon, Ref("UsageReport")).body("RuntimeUsageReport"),
    get("/api/runtimes/{id}/usage", "A runtime's usage per local day, provider and model, with its cost", User, List("RuntimeUsage")).query(&["days", "tz"]),
    get("/api/runtimes/{id}/usage/by-agent", "A runtime's usage per agent, provider and model, with its cost", User, List("RuntimeAgentUsage")).query(&["days", "tz"]),
    get("/api/runtimes/{id}/usage/by-hour", "A runtime's usage per local hour of the day and model, with its cost", User, List("RuntimeHourUsage")).query(&["days", "tz"]),
    get("/api/usage/daily", "Workspace usage per local day and model, with its cost", Workspace, List("DailyUsage")).query(&["days", "tz"]),
    get("/api/usage/summary", "Workspace usage per model, with its cost and whether it was priced", Workspace, List("UsageSummary")).query(&["days", "tz"]),
    get("/api/dashboard/usage/daily", "Workspace usage per local day, provider and model, with its cost", Workspace, List("DashboardDailyUsage")).query(&["days", "tz"]),
    get("/api/dashboard/usage/by-agent", "Workspace usage per agent, provider and model, with its cost", Workspace, List("RuntimeAgentUsage")).query(&["days", "tz"]),
    get("/api/dashboard/usage/by-runtime", "Workspace usage per runtime, provider and model, with its cost", Workspace, List("DashboardRuntimeUsage")).query(&["days", "tz"]),
    get("/api/dashboard/agent-runtime", "Run time and ended tasks per agent", Workspace, List("AgentRunTime")).query(&["days", "tz"]),
    get("/api/dashboard/failures/daily", "Completed and failed tasks per local day and failure reason", Workspace, List("FailuresDaily")).query(&["days", "tz"]),
    get("/api/tasks/{id}/usage", "A task's usage per provider and model, with its cost", User, List("TaskUsage")),
    get("/api/pricing", "Prices: the built-in table and the workspace's overrides", Workspace, List("Price")),
    route("put", "/api/pricing/overrides", "Set a price override (201 when new, 200 when it replaces one)", Workspace, Ref("Price")).body("PriceOverride"),
    delete("/api/pricing/overrides", "Delete a price override", Workspace).query(&["provider", "model", "effective_from"]),
    get("/api/budgets", "Budgets with what was spent in their current period", Workspace, List("Budget")),
    post("/api/budgets", "Set a budget", Workspace, Ref("Budget")).body("CreateBudget").created(),
    route("put", "/api/budgets/{id}", "Change a budget's limit or warning threshold", Workspace, Ref("Budget")).body("ChangeBudget"),
    delete("/api/budgets/{id}", "Delete a budget", Workspace),
    get("/api/webhooks", "The workspace's webhooks (owners and admins)", Workspace, List("Webhook")),
    post("/api/webhooks", "Register a webhook; its secret is in this reply only", Workspace, Ref("WebhookCreated")).body("CreateWebhook").created(),
    delete("/api/webhooks/{id}", "Delete a webhook", User),
    get("/api/webhooks/{id}/deliveries", "A webhook's deliveries and their attempts, newest first", User, List("WebhookDelivery")).query(&["limit", "before_seq"]),
    post("/api/tokens/current/renew", "Extend the request's own token in place", Daemon, Ref("Renewed")),
    post("/api/daemon/runtimes/{id}/recover-orphans", "Fail the work a restarted daemon left behind", Daemon, Ref("Recovered")).optional_body("RecoverOrphans"),
    post("/api/daemon/runtimes/{id}/tasks/{task_id}/prepare-lease", "Keep a dispatched task while the daemon prepares it", Daemon, Ref("Task")),
    post("/api/daemon/tasks/{id}/session", "Pin the agent's session and work directory", Daemon, Empty).body("PinSession").no_content(),
    post("/api/daemon/tasks/{id}/cancel-ack", "Acknowledge a cancellation", Daemon, Ref("Status")).optional_body("CancelAck"),
    get("/api/daemon/tasks/{id}/gc-check", "Whether a task is over", Daemon, Ref("TaskGcStatus")),
    get("/api/daemon/issues/{issue_id}/gc-check", "An issue's state, from its tasks", Daemon, Ref("IssueGcStatus")),
    post("/api/daemon/workspaces/{id}/issues/gc-check", "The state of many issues", Daemon, Ref("IssueGcResults")).body("IssueGcCheck"),
    get("/api/daemon/workspaces/{id}/repos", "A workspace's repositories (none)", Daemon, Ref("WorkspaceRepos")),
    get("/api/daemon/workspaces/{id}/runtime-profiles", "A workspace's custom runtime profiles (none)", Daemon, Ref("RuntimeProfiles")),
    get("/api/daemon/chat-sessions/{id}/gc-check", "Chat sessions: unsupported", Daemon, Ref("ChatSessionGcStatus")),
    get("/api/daemon/autopilot-runs/{id}/gc-check", "Autopilot runs: unsupported", Daemon, Ref("AutopilotRunGcStatus")),
];

/// `content` of a request or reply with this body.
fn content(schema: Schema) -> Value {
    let (kind, schema) = match schema {
        Ref(name) => (
            "application/json",
            json!({ "$ref": format!("#/components/schemas/{name}") }),
        ),
        List(name) => (
            "application/json",
            json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}}),
        ),
        AnyObject => ("application/json", json!({"type": "object"})),
        Text(kind) => (kind, json!({"type": "string"})),
        Empty | Nothing => return json!({}),
    };
    json!({ kind: {"schema": schema} })
}

fn parameters(r: &Route) -> Vec<Value> {
    let mut params: Vec<Value> = Vec::new();
    let mut rest = r.path;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 1..start + len];
        // an issue is a free reference, every other id a UUID
        let schema = if name == "issue_id" {
            json!({"type": "string", "minLength": 1,
                   "maxLength": crate::store::tasks::MAX_ISSUE_ID_BYTES})
        } else {
            json!({"type": "string", "format": "uuid"})
        };
        params.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
        rest = &rest[start + len..];
    }
    if let Auth::Workspace = r.auth {
        params.push(
            json!({"name": "X-Workspace-ID", "in": "header", "required": false,
                           "schema": {"type": "string", "format": "uuid"}}),
        );
        params.push(
            json!({"name": "X-Workspace-Slug", "in": "header", "required": false,
                           "schema": {"type": "string"}}),
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
    params
}

fn operation(r: &Route) -> Value {
    let error = json!({"description": "error", "content": content(Ref("Error"))});
    let mut responses = Map::new();
    let success = match r.reply {
        Nothing => json!({"description": "switching protocols"}),
        Empty => json!({"description": "success"}),
        reply => json!({"description": "success", "content": content(reply)}),
    };
    responses.insert(r.status.to_string(), success);
    if r.etag {
        responses.insert(
            "304".into(),
            json!({"description": "not modified: the list has the ETag named in If-None-Match"}),
        );
    }
    for status in ["400", "401", "403", "404", "409", "413"] {
        responses.insert(status.to_string(), error.clone());
    }
    let mut op = json!({
        "summary": r.summary,
        "parameters": parameters(r),
        "responses": responses,
    });
    op["security"] = match r.auth {
        Auth::None => json!([]),
        User | Workspace => json!([{"personal_access_token": []}]),
        Daemon => json!([{"personal_access_token": []}, {"daemon_token": []}]),
    };
    if let Some((schema, required)) = r.body {
        op["requestBody"] = json!({"required": required, "content": content(schema)});
    }
    op
}

/// The document, built from `ROUTES`.
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
                "task_token": {"type": "http", "scheme": "bearer", "description": "mat_ + 40 hex, minted at claim: its own task's daemon routes and its agent only"},
            },
            "schemas": schemas::components(),
        },
    })
}

async fn document() -> HttpResponse {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    HttpResponse::Ok().json(DOCUMENT.get_or_init(spec))
}

/// The methods (upper case, in table order) that `ROUTES` lists for a
/// concrete request path such as `/api/tokens/5c0b…`; a `{…}` segment of a
/// template matches any one non-empty segment. Empty for unknown paths.
pub fn allowed_methods(path: &str) -> Vec<String> {
    let matches = |template: &str| {
        let (mut want, mut got) = (template.split('/'), path.split('/'));
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w.starts_with('{') && !g.is_empty() => {}
                (Some(w), Some(g)) if w == g => {}
                _ => return false,
            }
        }
    };
    let mut methods: Vec<String> = Vec::new();
    for r in ROUTES.iter().filter(|r| matches(r.path)) {
        let method = r.method.to_ascii_uppercase();
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    methods
}
