//! The schemas of what the current daemon sends and reads besides task
//! transitions: token renewal, orphan recovery, session pins, cancellation
//! acks, the work-directory checks, and the answers about what agenthub
//! does not have.

use serde_json::{json, Value};

use super::schemas::{count, list, nullable, one_of, properties, reply, string, time, uuid, words};
use crate::domain::TaskStatus;

/// A request body with these fields, none of them required.
fn optional_fields(fields: &[(&str, Value)]) -> Value {
    json!({"type": "object", "properties": properties(fields)})
}

fn none() -> Value {
    json!({"type": "array", "maxItems": 0})
}

/// An issue's state as a work-directory check reads it.
fn issue_status() -> Value {
    one_of(&["todo", "in_progress", "done", "cancelled", "blocked"])
}

fn replies() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Renewed",
            reply(&[
                (
                    "expires_at",
                    json!({"anyOf": [{"type": "string", "format": "date-time"},
                                     {"type": "string", "maxLength": 0}]}),
                ),
                ("renewed", json!({"type": "boolean"})),
            ]),
        ),
        (
            "TaskMessage",
            json!({
                "type": "object",
                "required": ["task_id", "seq", "type", "created_at"],
                "additionalProperties": false,
                "properties": {
                    "task_id": uuid(),
                    "seq": count(),
                    "type": string(),
                    "tool": string(),
                    "content": string(),
                    "input": {"type": "object"},
                    "output": string(),
                    "created_at": time(),
                },
            }),
        ),
        (
            "ActiveTask",
            reply(&[
                ("id", uuid()),
                ("runtime_id", uuid()),
                ("agent_id", nullable(uuid())),
                ("status", one_of(&["dispatched", "running"])),
            ]),
        ),
        (
            "Recovered",
            reply(&[
                ("orphaned", count()),
                ("retried", count()),
                ("active_tasks", active_tasks()),
            ]),
        ),
        (
            "TaskGcStatus",
            reply(&[
                ("status", words(TaskStatus::ALL)),
                ("completed_at", nullable(time())),
            ]),
        ),
        (
            "IssueGcStatus",
            reply(&[("status", issue_status()), ("updated_at", time())]),
        ),
        (
            "IssueGcResults",
            reply(&[(
                "issues",
                list(reply(&[
                    ("id", string()),
                    ("found", json!({"type": "boolean"})),
                    ("status", nullable(issue_status())),
                    ("updated_at", nullable(time())),
                ])),
            )]),
        ),
        (
            "WorkspaceRepos",
            reply(&[
                ("workspace_id", uuid()),
                ("repos", none()),
                ("repos_version", string()),
            ]),
        ),
        (
            "RuntimeProfiles",
            reply(&[("workspace_id", uuid()), ("runtime_profiles", none())]),
        ),
        (
            "ChatSessionGcStatus",
            reply(&[
                ("status", one_of(&["unsupported"])),
                ("updated_at", json!({"type": "null"})),
            ]),
        ),
        (
            "AutopilotRunGcStatus",
            reply(&[
                ("status", one_of(&["unsupported"])),
                ("completed_at", json!({"type": "null"})),
            ]),
        ),
    ]
}

/// The tasks still a daemon's own (heartbeat, registration, recovery).
pub(super) fn active_tasks() -> Value {
    json!({"type": "array", "maxItems": crate::store::tasks::MAX_ACTIVE_LISTED,
           "items": super::schemas::component("ActiveTask")})
}

/// The task ids a daemon says it still runs.
pub(super) fn active_task_ids() -> Value {
    nullable(
        json!({"type": "array", "maxItems": crate::store::tasks::MAX_ACTIVE_LISTED,
                    "items": uuid()}),
    )
}

fn requests() -> Vec<(&'static str, Value)> {
    let text = || nullable(string());
    vec![
        (
            "RecoverOrphans",
            optional_fields(&[("active_task_ids", active_task_ids())]),
        ),
        (
            "PinSession",
            optional_fields(&[("session_id", text()), ("work_dir", text())]),
        ),
        (
            "CancelAck",
            optional_fields(&[
                ("branch_name", text()),
                ("durable_work_dir", text()),
                ("error_message", text()),
                ("failure_reason", text()),
            ]),
        ),
        (
            "IssueGcCheck",
            optional_fields(&[(
                "issue_ids",
                json!({"type": "array", "maxItems": 500,
                       "items": {"type": "string",
                                 "maxLength": crate::store::tasks::MAX_ISSUE_ID_BYTES}}),
            )]),
        ),
        (
            "Progress",
            optional_fields(&[
                ("summary", text()),
                ("step", nullable(json!({"type": "integer"}))),
                ("total", nullable(json!({"type": "integer"}))),
            ]),
        ),
        (
            "Messages",
            optional_fields(&[(
                "messages",
                nullable(list(json!({
                    "type": "object",
                    "required": ["seq", "type"],
                    "properties": {
                        "seq": {"type": "integer", "minimum": 0, "maximum": i32::MAX},
                        "type": {"type": "string", "minLength": 1, "maxLength": 64},
                        "tool": {"type": ["string", "null"], "maxLength": 256},
                        "content": {"type": ["string", "null"]},
                        "input": {"type": ["object", "null"]},
                        "output": {"type": ["string", "null"]},
                    },
                }))),
            )]),
        ),
    ]
}

pub(super) fn components() -> Vec<(&'static str, Value)> {
    let mut all = replies();
    all.extend(requests());
    all
}
