//! The component schemas of `/api/openapi.json`: every JSON reply, field
//! for field as the handlers write them (`tests/openapi.rs` checks real
//! replies against them), and the helpers `requests.rs` shares.
//!
//! Replies list every field as required and allow no others, so a field
//! added to or dropped from a reply struct without updating this file fails
//! the test.

use serde_json::{json, Map, Value};

use crate::domain::{
    AgentStatus, BudgetPeriod, BudgetScope, InvitationStatus, Role, RuntimeMode, RuntimeStatus,
    TaskStatus, Visibility,
};

pub(super) fn string() -> Value {
    json!({"type": "string"})
}

pub(super) fn uuid() -> Value {
    json!({"type": "string", "format": "uuid"})
}

/// RFC 3339 UTC, whole seconds.
pub(super) fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

pub(super) fn count() -> Value {
    json!({"type": "integer", "minimum": 0})
}

/// A budget's limit in USD.
pub(super) fn limit_usd() -> Value {
    json!({"type": "number", "exclusiveMinimum": 0})
}

/// A whole percentage, 1 to 100.
pub(super) fn percent() -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": 100})
}

pub(super) fn one_of(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}

/// Every value of one of the domain's word enums (`TaskStatus::ALL`, …).
pub(super) fn words<T: serde::Serialize>(values: &[T]) -> Value {
    json!({"type": "string", "enum": values})
}

pub(super) fn list(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

pub(super) fn component(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// `schema`, or null.
pub(super) fn nullable(schema: Value) -> Value {
    let mut schema = schema;
    match schema.get("type").cloned() {
        Some(Value::String(t)) => schema["type"] = json!([t, "null"]),
        _ => return json!({"anyOf": [schema, {"type": "null"}]}),
    }
    if let Some(Value::Array(values)) = schema.get_mut("enum") {
        values.push(Value::Null);
    }
    schema
}

pub(super) fn properties<S: AsRef<str>>(fields: &[(S, Value)]) -> Map<String, Value> {
    fields
        .iter()
        .map(|(name, schema)| (name.as_ref().to_string(), schema.clone()))
        .collect()
}

/// A reply object: exactly these fields, each always present.
pub(super) fn reply<S: AsRef<str>>(fields: &[(S, Value)]) -> Value {
    let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_ref()).collect();
    json!({
        "type": "object",
        "properties": properties(fields),
        "required": names,
        "additionalProperties": false,
    })
}

pub(super) const COUNTS: [&str; 4] = [
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
];

fn token_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("id", uuid()),
        ("name", string()),
        ("token_prefix", string()),
        ("expires_at", nullable(time())),
        ("last_used_at", nullable(time())),
        ("revoked", json!({"type": "boolean"})),
        ("created_at", time()),
    ]
}

fn people() -> Vec<(&'static str, Value)> {
    let mut new_token = token_fields();
    new_token.push(("token", string()));
    vec![
        ("Status", reply(&[("status", one_of(&["ok"]))])),
        (
            "Unbound",
            reply(&[("agents_unbound", count()), ("tasks_cancelled", count())]),
        ),
        ("Error", reply(&[("error", string())])),
        (
            "User",
            reply(&[
                ("id", uuid()),
                ("name", string()),
                ("email", string()),
                ("created_at", time()),
                ("updated_at", time()),
            ]),
        ),
        ("Token", reply(&token_fields())),
        ("NewToken", reply(&new_token)),
        (
            "Workspace",
            reply(&[
                ("id", uuid()),
                ("name", string()),
                ("slug", string()),
                ("description", string()),
                ("created_at", time()),
                ("updated_at", time()),
                ("timezone", string()),
                (
                    "max_concurrent_tasks",
                    nullable(json!({"type": "integer", "minimum": 1})),
                ),
            ]),
        ),
        (
            "Member",
            reply(&[
                ("id", uuid()),
                ("workspace_id", uuid()),
                ("user_id", uuid()),
                ("role", words(Role::ALL)),
                ("name", string()),
                ("email", string()),
                ("created_at", time()),
            ]),
        ),
        (
            "Invitation",
            reply(&[
                ("id", uuid()),
                ("workspace_id", uuid()),
                ("workspace_name", string()),
                ("email", string()),
                ("role", words(Role::ALL)),
                ("status", words(InvitationStatus::ALL)),
                ("invited_by", nullable(uuid())),
                ("created_at", time()),
                ("expires_at", time()),
            ]),
        ),
        (
            "DaemonToken",
            reply(&[
                ("token", string()),
                ("workspace_id", uuid()),
                ("daemon_id", string()),
                ("expires_at", time()),
            ]),
        ),
    ]
}

/// A ping (`update: false`) or an update request.
fn probe(update: bool) -> Value {
    let statuses = ["pending", "running", "completed", "failed", "timeout"];
    let mut fields = vec![
        ("id", uuid()),
        ("runtime_id", uuid()),
        ("status", one_of(&statuses)),
        ("output", string()),
        ("error", string()),
        ("duration_ms", nullable(count())),
        ("created_at", time()),
        ("updated_at", time()),
    ];
    if update {
        fields.push(("target_version", string()));
    }
    reply(&fields)
}

/// Why a runtime is offline: a code, and what a daemon said about it.
fn offline_reason() -> Value {
    let optional = |fields: &[(&str, Value)], required: &[&str]| {
        json!({
            "type": "object",
            "properties": properties(fields),
            "required": required,
            "additionalProperties": false,
        })
    };
    let repair = optional(
        &[
            ("package", string()),
            ("command", string()),
            ("shell", string()),
        ],
        &[],
    );
    optional(
        &[
            ("code", json!({"type": "string", "minLength": 1})),
            ("detail", string()),
            ("repair", repair),
        ],
        &["code"],
    )
}

fn runtimes() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Runtime",
            reply(&[
                ("id", uuid()),
                ("workspace_id", uuid()),
                ("daemon_id", nullable(string())),
                ("name", string()),
                ("runtime_mode", words(RuntimeMode::ALL)),
                ("provider", string()),
                ("status", words(RuntimeStatus::ALL)),
                ("device_info", string()),
                ("metadata", json!({"type": "object"})),
                ("owner_id", nullable(uuid())),
                ("last_seen_at", nullable(time())),
                ("created_at", time()),
                ("updated_at", time()),
                ("offline_reason", nullable(offline_reason())),
                ("visibility", words(Visibility::ALL)),
                ("custom_name", nullable(string())),
                ("offline_since", nullable(time())),
                (
                    "max_concurrent_tasks",
                    nullable(json!({"type": "integer", "minimum": 1})),
                ),
                (
                    "machine_max_concurrent_tasks",
                    nullable(json!({"type": "integer", "minimum": 1})),
                ),
            ]),
        ),
        (
            "Registered",
            reply(&[
                ("runtimes", list(component("Runtime"))),
                ("repos", json!({"type": "array", "maxItems": 0})),
                ("repos_version", string()),
                ("settings", json!({"type": "object"})),
                ("active_tasks", super::daemon::active_tasks()),
            ]),
        ),
        (
            "Heartbeat",
            json!({
                "type": "object",
                "properties": {
                    "runtime_id": uuid(),
                    "status": one_of(&["ok"]),
                    "server_capabilities": list(string()),
                    "pending_ping": reply(&[("id", uuid())]),
                    "pending_update": reply(&[("id", uuid()), ("target_version", string())]),
                    "active_tasks": super::daemon::active_tasks(),
                },
                "required": ["runtime_id", "status", "server_capabilities"],
                "additionalProperties": false,
            }),
        ),
        (
            "DaemonWorkspace",
            reply(&[("id", uuid()), ("name", string())]),
        ),
        ("Ping", probe(false)),
        ("Update", probe(true)),
        (
            "HourCount",
            reply(&[
                (
                    "hour",
                    json!({"type": "integer", "minimum": 0, "maximum": 23}),
                ),
                ("count", count()),
            ]),
        ),
    ]
}

fn task_status() -> Value {
    words(TaskStatus::ALL)
}

fn task_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("id", uuid()),
        ("workspace_id", uuid()),
        ("agent_id", nullable(uuid())),
        ("runtime_id", nullable(uuid())),
        ("issue_id", nullable(string())),
        ("status", task_status()),
        ("priority", json!({"type": "integer"})),
        ("prompt", string()),
        ("dispatched_at", nullable(time())),
        ("started_at", nullable(time())),
        ("completed_at", nullable(time())),
        ("result", nullable(json!({"type": "object"}))),
        ("error", nullable(string())),
        ("created_by", nullable(uuid())),
        ("created_at", time()),
        ("session_id", nullable(string())),
        ("work_dir", nullable(string())),
        ("prepare_lease_expires_at", nullable(time())),
        ("branch_name", nullable(string())),
        ("durable_work_dir", nullable(string())),
        ("failure_reason", nullable(string())),
        ("cancel_acked_at", nullable(time())),
        ("attempt", json!({"type": "integer", "minimum": 1})),
        ("parent_task_id", nullable(uuid())),
        ("blocked_reason", nullable(one_of(&["budget_exceeded"]))),
    ]
}

fn agents_and_tasks() -> Vec<(&'static str, Value)> {
    let mut queued = task_fields();
    queued.push(("runtime_status", words(crate::domain::RuntimeStatus::ALL)));
    let mut claimed = task_fields();
    claimed.push((
        "agent",
        nullable(reply(&[
            ("id", uuid()),
            ("name", string()),
            ("instructions", string()),
        ])),
    ));
    claimed.push((
        "auth_token",
        json!({"type": "string", "pattern": "^mat_[0-9a-f]{40}$"}),
    ));
    vec![
        (
            "Agent",
            reply(&[
                ("id", uuid()),
                ("workspace_id", uuid()),
                ("runtime_id", nullable(uuid())),
                ("name", string()),
                ("description", string()),
                ("instructions", string()),
                ("avatar_url", nullable(string())),
                ("runtime_mode", words(RuntimeMode::ALL)),
                ("runtime_config", json!({"type": "object"})),
                ("visibility", words(Visibility::ALL)),
                ("status", words(AgentStatus::ALL)),
                (
                    "max_concurrent_tasks",
                    json!({"type": "integer", "minimum": 1, "maximum": 100}),
                ),
                (
                    "max_attempts",
                    json!({"type": "integer", "minimum": 1, "maximum": 10}),
                ),
                ("owner_id", nullable(uuid())),
                ("skills", json!({"type": "array", "maxItems": 0})),
                ("created_at", time()),
                ("updated_at", time()),
                ("archived_at", nullable(time())),
                ("archived_by", nullable(uuid())),
                (
                    "fallback_runtime_ids",
                    json!({"type": "array", "items": uuid(), "maxItems": 5}),
                ),
                (
                    "fallback_after_secs",
                    json!({"type": "integer", "minimum": 30, "maximum": 86400}),
                ),
                ("quota_failed_at", nullable(time())),
            ]),
        ),
        ("Task", reply(&task_fields())),
        ("QueuedTask", reply(&queued)),
        ("ClaimedTask", reply(&claimed)),
        (
            "Claim",
            reply(&[("task", nullable(component("ClaimedTask")))]),
        ),
        (
            "BatchClaimed",
            reply(&[(
                "tasks",
                json!({"type": "array", "items": component("ClaimedTask")}),
            )]),
        ),
        (
            "TaskStatus",
            reply(&[("id", uuid()), ("status", task_status())]),
        ),
    ]
}

pub(super) fn counts(prefix: &str) -> Vec<(String, Value)> {
    COUNTS
        .iter()
        .map(|c| (format!("{prefix}{c}"), count()))
        .collect()
}

fn usage() -> Vec<(&'static str, Value)> {
    let mut runtime_usage = vec![
        ("runtime_id".to_string(), uuid()),
        (
            "date".to_string(),
            json!({"type": "string", "format": "date"}),
        ),
        ("provider".to_string(), string()),
        ("model".to_string(), string()),
    ];
    runtime_usage.extend(counts(""));
    runtime_usage.push(("cost_usd_ticks".to_string(), nullable(count())));
    runtime_usage.push((
        "source".to_string(),
        one_of(&["runtime_report", "task_usage"]),
    ));
    runtime_usage.extend([
        (
            "cost_usd".to_string(),
            json!({"type": "number", "minimum": 0}),
        ),
        ("uncosted_tokens".to_string(), count()),
    ]);
    let usd = || json!({"type": "number", "minimum": 0});
    let mut summary = vec![("model".to_string(), string())];
    summary.extend(counts("total_"));
    summary.extend([
        ("task_count".to_string(), count()),
        ("cost_usd".to_string(), usd()),
        ("uncosted_tokens".to_string(), count()),
    ]);
    let mut daily = vec![(
        "date".to_string(),
        json!({"type": "string", "format": "date"}),
    )];
    daily.extend(summary.clone());
    summary.push((
        "priced".to_string(),
        json!({"type": "boolean", "description": "false when some of the model's tokens had no price"}),
    ));
    let day = || json!({"type": "string", "format": "date"});
    let mut task_usage = vec![
        ("provider".to_string(), string()),
        ("model".to_string(), string()),
    ];
    task_usage.extend(counts(""));
    task_usage.extend([
        ("cost_usd".to_string(), usd()),
        ("uncosted_tokens".to_string(), count()),
        (
            "cost_source".to_string(),
            one_of(&["reported", "estimated", "unpriced"]),
        ),
        (
            "priced_as".to_string(),
            nullable(reply(&[
                ("provider", string()),
                ("model", string()),
                ("effective_from", day()),
                ("source", one_of(&["builtin", "override"])),
            ])),
        ),
    ]);
    let price = reply(&[
        ("provider", string()),
        ("model", string()),
        ("input_usd_per_mtok", usd()),
        ("output_usd_per_mtok", usd()),
        ("cache_read_usd_per_mtok", usd()),
        ("cache_write_usd_per_mtok", usd()),
        ("effective_from", day()),
        ("source", one_of(&["builtin", "override"])),
    ]);
    let mut by_agent = vec![
        (
            "agent_id".to_string(),
            json!({"type": ["string", "null"],
                   "description": "the agent's id, null once it is gone, \"private\" for agents the caller may not see"}),
        ),
        ("provider".to_string(), string()),
        ("model".to_string(), string()),
    ];
    by_agent.extend(counts(""));
    by_agent.push(("cost_usd_ticks".to_string(), count()));
    by_agent.extend(counts("uncosted_"));
    by_agent.extend([
        ("task_count".to_string(), count()),
        ("cost_usd".to_string(), usd()),
        ("uncosted_tokens".to_string(), count()),
    ]);
    let mut by_hour = vec![
        (
            "hour".to_string(),
            json!({"type": "integer", "minimum": 0, "maximum": 23}),
        ),
        ("model".to_string(), string()),
    ];
    by_hour.extend(by_agent.iter().skip(3).cloned());
    let dated = |first: (&str, Value)| {
        let mut row = vec![(first.0.to_string(), first.1)];
        row.extend(by_agent.iter().skip(1).cloned());
        reply(&row)
    };
    let agent_id = by_agent[0].1.clone();
    let webhook = vec![
        ("id", uuid()),
        ("workspace_id", uuid()),
        ("url", string()),
        ("events", list(one_of(crate::store::webhooks::EVENT_TYPES))),
        ("created_by", nullable(uuid())),
        ("created_at", time()),
    ];
    let mut webhook_created = webhook.clone();
    webhook_created.push((
        "secret",
        json!({"type": "string", "pattern": "^whsec_[0-9a-f]{64}$"}),
    ));
    vec![
        ("DashboardDailyUsage", dated(("date", day()))),
        (
            "DashboardRuntimeUsage",
            dated((
                "runtime_id",
                json!({"type": ["string", "null"],
                       "description": "the runtime's id (maybe deleted since), null for tasks that never reached one"}),
            )),
        ),
        (
            "AgentRunTime",
            reply(&[
                ("agent_id", agent_id),
                ("total_seconds", count()),
                ("task_count", count()),
                ("failed_count", count()),
                ("cancelled_count", count()),
            ]),
        ),
        (
            "FailuresDaily",
            reply(&[
                ("date", day()),
                (
                    "failure_reason",
                    json!({"type": "string", "description": "'' for tasks that completed"}),
                ),
                ("task_count", count()),
            ]),
        ),
        ("RuntimeHourUsage", reply(&by_hour)),
        ("RuntimeAgentUsage", reply(&by_agent)),
        ("TaskUsage", reply(&task_usage)),
        ("Price", price),
        (
            "Budget",
            reply(&[
                ("id", uuid()),
                ("workspace_id", uuid()),
                ("scope", words(BudgetScope::ALL)),
                ("scope_id", nullable(uuid())),
                ("period", words(BudgetPeriod::ALL)),
                ("limit_usd", limit_usd()),
                ("warn_percent", percent()),
                ("spent_usd", json!({"type": "number", "minimum": 0})),
                ("remaining_usd", json!({"type": "number", "minimum": 0})),
                ("period_start", time()),
                ("period_end", time()),
                ("blocked", json!({"type": "boolean"})),
                ("blocked_until", nullable(time())),
                ("created_by", nullable(uuid())),
                ("created_at", time()),
                ("updated_at", time()),
            ]),
        ),
        ("Webhook", reply(&webhook)),
        ("WebhookCreated", reply(&webhook_created)),
        (
            "WebhookDelivery",
            reply(&[
                ("event_id", string()),
                ("event", one_of(crate::store::webhooks::EVENT_TYPES)),
                ("event_created_at", time()),
                ("status", one_of(&["pending", "delivered", "failed"])),
                (
                    "attempts",
                    list(reply(&[
                        ("at", time()),
                        (
                            "status_code",
                            nullable(json!({"type": "integer", "minimum": 100, "maximum": 599})),
                        ),
                        ("error", nullable(string())),
                    ])),
                ),
                ("next_attempt_at", nullable(time())),
            ]),
        ),
        ("RuntimeUsage", reply(&runtime_usage)),
        ("DailyUsage", reply(&daily)),
        ("UsageSummary", reply(&summary)),
        (
            "UsageReport",
            reply(&[
                ("status", one_of(&["ok"])),
                ("accepted", count()),
                (
                    "rejected",
                    list(reply(&[("index", count()), ("error", string())])),
                ),
            ]),
        ),
    ]
}

/// `#/components/schemas`.
pub fn components() -> Map<String, Value> {
    [
        people(),
        runtimes(),
        agents_and_tasks(),
        usage(),
        super::daemon::components(),
        super::requests::bodies(),
    ]
    .into_iter()
    .flatten()
    .map(|(name, schema)| (name.to_string(), schema))
    .collect()
}
