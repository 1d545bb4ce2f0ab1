//! The request bodies of `/api/openapi.json`, field for field as the
//! handlers read them. They allow unknown fields (the server ignores them)
//! and admit `null` wherever the server reads null as "not given".

use serde_json::{json, Value};

use super::schemas::{
    count, counts, limit_usd, list, nullable, one_of, percent, properties, string, uuid, words,
};
use crate::domain::{AgentStatus, BudgetPeriod, BudgetScope, Role, Visibility};

/// A body with these fields, of which `required` must be given.
fn request<S: AsRef<str>>(fields: &[(S, Value)], required: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": properties(fields),
        "required": required,
    })
}

fn optional_string() -> Value {
    nullable(string())
}

/// A capacity setting: tasks at once, from 1 to `max`; null for no limit.
fn capacity(max: i64) -> Value {
    nullable(json!({"type": "integer", "minimum": 1, "maximum": max}))
}

/// One usage entry of a report; `date` only for a runtime's daily totals,
/// `cost_usd_ticks` only for a task's.
fn usage_entry(with_date: bool) -> Value {
    let mut fields = vec![
        (
            "provider".to_string(),
            json!({"type": "string", "minLength": 1}),
        ),
        ("model".to_string(), optional_string()),
    ];
    fields.extend(counts("").into_iter().map(|(n, s)| (n, nullable(s))));
    let mut required = vec!["provider"];
    if !with_date {
        fields.push(("cost_usd_ticks".to_string(), nullable(count())));
    }
    if with_date {
        fields.push((
            "date".to_string(),
            json!({"type": "string", "format": "date"}),
        ));
        required.push("date");
    }
    request(&fields, &required)
}

/// Creating needs a name and a runtime; editing leaves out (or nulls) what
/// stays as it is.
fn agent_request(create: bool) -> Value {
    let (name, runtime, required) = if create {
        (string(), uuid(), &["name", "runtime_id"][..])
    } else {
        (nullable(string()), nullable(uuid()), &[][..])
    };
    request(
        &[
            ("name", name),
            ("runtime_id", runtime),
            ("description", optional_string()),
            ("instructions", optional_string()),
            ("avatar_url", optional_string()),
            ("runtime_config", nullable(json!({"type": "object"}))),
            ("visibility", nullable(words(Visibility::ALL))),
            ("status", nullable(words(AgentStatus::ALL))),
            (
                "max_concurrent_tasks",
                nullable(json!({"type": "integer", "minimum": 1, "maximum": 100})),
            ),
            (
                "max_attempts",
                nullable(json!({"type": "integer", "minimum": 1, "maximum": 10})),
            ),
            (
                "fallback_runtime_ids",
                nullable(json!({"type": "array", "items": uuid(), "maxItems": 5})),
            ),
            (
                "fallback_after_secs",
                nullable(json!({"type": "integer", "minimum": 30, "maximum": 86400})),
            ),
        ],
        required,
    )
}

fn probe_result(statuses: &[&str]) -> Value {
    request(
        &[
            ("status", one_of(statuses)),
            ("output", optional_string()),
            ("error", optional_string()),
            ("duration_ms", nullable(count())),
        ],
        &["status"],
    )
}

/// A registration: at least one runtime or one failed profile.
fn register() -> Value {
    let runtime_spec = request(
        &[
            ("name", optional_string()),
            ("type", optional_string()),
            ("version", optional_string()),
            ("status", optional_string()),
        ],
        &[],
    );
    let failed_profile = request(
        &[
            ("profile_id", nullable(uuid())),
            ("command_name", optional_string()),
            ("reason", optional_string()),
        ],
        &[],
    );
    let mut body = request(
        &[
            ("workspace_id", uuid()),
            ("daemon_id", string()),
            ("legacy_daemon_ids", nullable(list(optional_string()))),
            ("device_name", optional_string()),
            ("cli_version", optional_string()),
            ("launched_by", optional_string()),
            ("runtimes", nullable(list(runtime_spec))),
            ("failed_profiles", nullable(list(failed_profile))),
            ("active_task_ids", super::daemon::active_task_ids()),
        ],
        &["workspace_id", "daemon_id"],
    );
    let non_empty = |field: &str| json!({"required": [field], "properties": {field: {"type": "array", "minItems": 1}}});
    body["anyOf"] = json!([non_empty("runtimes"), non_empty("failed_profiles")]);
    body
}

/// `offline_reasons` of a deregistration: a reason per runtime id.
fn offline_reasons() -> Value {
    let repair = request(
        &[
            ("package", optional_string()),
            ("command", optional_string()),
            ("shell", optional_string()),
        ],
        &[],
    );
    let reason = request(
        &[
            ("code", json!({"type": "string", "minLength": 1})),
            ("detail", optional_string()),
            ("repair", nullable(repair)),
        ],
        &["code"],
    );
    json!({
        "type": "object",
        "propertyNames": {"format": "uuid"},
        "additionalProperties": nullable(reason),
    })
}

pub(super) fn bodies() -> Vec<(&'static str, Value)> {
    let days = json!({"type": ["integer", "null"], "minimum": 1, "maximum": 3650});
    vec![
        (
            "CreateToken",
            request(
                &[("name", optional_string()), ("expires_in_days", days)],
                &[],
            ),
        ),
        (
            "CreateWorkspace",
            request(
                &[
                    ("name", string()),
                    ("slug", optional_string()),
                    ("description", optional_string()),
                ],
                &["name"],
            ),
        ),
        (
            "Invite",
            request(
                &[("email", string()), ("role", nullable(words(Role::ALL)))],
                &["email"],
            ),
        ),
        (
            "ChangeRole",
            request(&[("role", words(Role::ALL))], &["role"]),
        ),
        (
            "CreateDaemonToken",
            request(&[("daemon_id", string())], &["daemon_id"]),
        ),
        ("Register", register()),
        (
            "WorkspaceSettings",
            request(
                &[
                    ("name", optional_string()),
                    ("description", optional_string()),
                    ("timezone", optional_string()),
                    ("max_concurrent_tasks", capacity(10_000)),
                ],
                &[],
            ),
        ),
        (
            "CreateBudget",
            request(
                &[
                    ("scope", words(BudgetScope::ALL)),
                    ("scope_id", nullable(uuid())),
                    ("period", words(BudgetPeriod::ALL)),
                    ("limit_usd", limit_usd()),
                    ("warn_percent", nullable(percent())),
                ],
                &["scope", "period", "limit_usd"],
            ),
        ),
        (
            "ChangeBudget",
            request(
                &[("limit_usd", limit_usd()), ("warn_percent", percent())],
                &[],
            ),
        ),
        (
            "PriceOverride",
            request(
                &[
                    ("provider", string()),
                    ("model", string()),
                    (
                        "input_usd_per_mtok",
                        json!({"type": "number", "minimum": 0}),
                    ),
                    (
                        "output_usd_per_mtok",
                        json!({"type": "number", "minimum": 0}),
                    ),
                    (
                        "cache_read_usd_per_mtok",
                        json!({"type": "number", "minimum": 0}),
                    ),
                    (
                        "cache_write_usd_per_mtok",
                        json!({"type": "number", "minimum": 0}),
                    ),
                    (
                        "effective_from",
                        json!({"type": "string", "format": "date"}),
                    ),
                ],
                &[
                    "provider",
                    "model",
                    "input_usd_per_mtok",
                    "output_usd_per_mtok",
                    "cache_read_usd_per_mtok",
                    "cache_write_usd_per_mtok",
                    "effective_from",
                ],
            ),
        ),
        (
            "Deregister",
            request(
                &[
                    ("runtime_ids", list(uuid())),
                    ("offline_reasons", nullable(offline_reasons())),
                ],
                &[],
            ),
        ),
        (
            "BatchClaim",
            request(
                &[
                    ("daemon_id", string()),
                    ("runtime_ids", list(string())),
                    ("max_tasks", json!({"type": "integer", "minimum": 0})),
                ],
                &["daemon_id"],
            ),
        ),
        (
            "HeartbeatRequest",
            request(
                &[
                    ("runtime_id", uuid()),
                    (
                        "supports_batch_import",
                        nullable(json!({"type": "boolean"})),
                    ),
                ],
                &["runtime_id"],
            ),
        ),
        ("PingResult", probe_result(&["completed", "failed"])),
        (
            "UpdateResult",
            probe_result(&["running", "completed", "failed"]),
        ),
        (
            "StartUpdate",
            request(&[("target_version", string())], &["target_version"]),
        ),
        (
            "CreateWebhook",
            request(
                &[
                    ("url", string()),
                    ("events", list(one_of(crate::store::webhooks::EVENT_TYPES))),
                ],
                &["url", "events"],
            ),
        ),
        (
            "UnbindAgents",
            request(
                &[("expected_active_agent_ids", list(uuid()))],
                &["expected_active_agent_ids"],
            ),
        ),
        (
            "RuntimeSettings",
            request(
                &[
                    ("visibility", words(Visibility::ALL)),
                    ("custom_name", optional_string()),
                    ("apply_to_machine", json!({"type": "boolean"})),
                    ("max_concurrent_tasks", capacity(1000)),
                    ("machine_max_concurrent_tasks", capacity(1000)),
                ],
                &[],
            ),
        ),
        ("CreateAgent", agent_request(true)),
        ("EditAgent", agent_request(false)),
        (
            "CreateTask",
            request(
                &[
                    ("prompt", string()),
                    ("priority", json!({"type": "integer"})),
                    ("issue_id", optional_string()),
                ],
                &["prompt"],
            ),
        ),
        ("TaskResult", nullable(json!({"type": "object"}))),
        (
            "TaskFailure",
            request(
                &[
                    ("error", optional_string()),
                    (
                        "failure_reason",
                        json!({"type": ["string", "null"],
                               "pattern": "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)*$",
                               "maxLength": crate::store::tasks::reasons::MAX_BYTES}),
                    ),
                ],
                &[],
            ),
        ),
        (
            "TaskUsageReport",
            request(&[("usage", list(usage_entry(false)))], &["usage"]),
        ),
        (
            "RuntimeUsageReport",
            request(&[("entries", list(usage_entry(true)))], &["entries"]),
        ),
    ]
}
