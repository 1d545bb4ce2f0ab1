//! Why a daemon took runtimes offline: the `offline_reasons` of
//! `POST /api/daemon/deregister`, keyed by runtime id. Today's daemon sends
//! one only for a cause the user has to repair (an agent CLI the OS refuses
//! to run), with the command that repairs it.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::short_text;
use crate::domain::RuntimeId;
use crate::error::ApiError;
use crate::probes::clip;

#[derive(Deserialize)]
pub(super) struct ReasonIn {
    code: Option<String>,
    detail: Option<String>,
    repair: Option<RepairIn>,
}

#[derive(Deserialize)]
struct RepairIn {
    package: Option<String>,
    command: Option<String>,
    shell: Option<String>,
}

/// The reason stored when a daemon deregisters without saying why (it is
/// shutting down).
pub(super) const DEREGISTERED: &str = "deregistered";

/// `value` as text of at most 8 KiB (cut, with a marker): prose and shell
/// commands people read, not identifiers.
fn long_text(value: Option<&str>, field: &str) -> Result<String, ApiError> {
    Ok(clip(crate::api::text(value, field)?))
}

/// Adds `name: value` to `object` unless `value` is empty, as the daemon
/// leaves empty fields out.
fn put(object: &mut Map<String, Value>, name: &str, value: String) {
    if !value.is_empty() {
        object.insert(name.to_string(), json!(value));
    }
}

fn repair(given: &RepairIn, field: &str) -> Result<Map<String, Value>, ApiError> {
    let mut repair = Map::new();
    let package = short_text(given.package.as_deref(), &format!("{field}.package"))?;
    put(&mut repair, "package", package);
    let command = long_text(given.command.as_deref(), &format!("{field}.command"))?;
    put(&mut repair, "command", command);
    let shell = short_text(given.shell.as_deref(), &format!("{field}.shell"))?;
    put(&mut repair, "shell", shell);
    Ok(repair)
}

/// One reason as the JSON object text stored: `{code, detail?, repair?}`.
fn reason(given: &ReasonIn, field: &str) -> Result<String, ApiError> {
    let code = short_text(given.code.as_deref(), &format!("{field}.code"))?;
    if code.is_empty() {
        return Err(ApiError::bad_request(format!("{field}.code is required")));
    }
    let mut object = Map::new();
    object.insert("code".into(), json!(code));
    put(
        &mut object,
        "detail",
        long_text(given.detail.as_deref(), &format!("{field}.detail"))?,
    );
    if let Some(given) = &given.repair {
        let repair = repair(given, &format!("{field}.repair"))?;
        if !repair.is_empty() {
            object.insert("repair".into(), Value::Object(repair));
        }
    }
    Ok(Value::Object(object).to_string())
}

/// The reasons by runtime id, validated before anything is written: 400
/// for a key that is not a runtime id or a reason without a `code`. A
/// `null` reason is no reason.
pub(super) fn parse(
    given: Option<BTreeMap<String, Option<ReasonIn>>>,
) -> Result<HashMap<RuntimeId, String>, ApiError> {
    let mut reasons = HashMap::new();
    for (key, value) in given.unwrap_or_default() {
        let field = format!("offline_reasons[{key:?}]");
        let id: RuntimeId = key
            .parse()
            .map_err(|e| ApiError::bad_request(format!("invalid {field}: {e}")))?;
        if let Some(value) = value {
            reasons.insert(id, reason(&value, &field)?);
        }
    }
    Ok(reasons)
}
