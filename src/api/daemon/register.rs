//! `POST /api/daemon/register`: the request as the daemons send it (April's
//! and today's), validated and turned into rows before any database work.

use serde::Deserialize;
use serde_json::json;

use crate::api::{required, short_text, text};
use crate::auth::Caller;
use crate::domain::{ProfileId, RuntimeStatus, TaskId, UserId, WorkspaceId};
use crate::error::ApiError;
use crate::store::runtimes::{self, Registration};
use crate::store::Conn;

#[derive(Deserialize)]
pub(super) struct RegisterRequest {
    workspace_id: Option<String>,
    daemon_id: Option<String>,
    /// The machine's former daemon ids (hostnames, per-profile UUIDs).
    legacy_daemon_ids: Option<Vec<Option<String>>>,
    device_name: Option<String>,
    cli_version: Option<String>,
    /// Who started the daemon (`desktop` for the desktop app).
    launched_by: Option<String>,
    runtimes: Option<Vec<RuntimeSpec>>,
    /// Custom runtime profiles the daemon could not launch.
    failed_profiles: Option<Vec<FailedProfile>>,
    /// The tasks this daemon still runs on the runtimes it registers; when
    /// given, their other dispatched and running tasks are reconciled.
    active_task_ids: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RuntimeSpec {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    version: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct FailedProfile {
    profile_id: Option<String>,
    command_name: Option<String>,
    reason: Option<String>,
}

/// Most runtimes (and failed profiles) one registration may carry (a
/// machine has a handful of agent CLIs); more is a 400.
pub const MAX_RUNTIMES_PER_REGISTRATION: usize = 100;
/// Most former daemon ids one registration may name: a few spellings of
/// the hostname and one id per old profile.
pub const MAX_LEGACY_DAEMON_IDS: usize = 32;

/// A validated registration.
pub(super) struct Parsed {
    pub workspace_id: WorkspaceId,
    pub daemon_id: String,
    /// The member the daemon acts for.
    pub owner: UserId,
    /// The runtimes the daemon runs, answered back to it.
    pub runtimes: Vec<Registration>,
    /// Failed profiles, kept as offline runtimes people can see.
    pub failed: Vec<Registration>,
    /// Former daemon ids whose runtimes fold into the new ones; empty for
    /// a daemon token, which reaches its own daemon_id only.
    pub legacy: Vec<String>,
    /// The tasks the daemon still runs, when it said: the runtimes' other
    /// dispatched and running tasks fail as `runtime_recovery`.
    pub active: Option<Vec<TaskId>>,
}

/// The member a registration acts for: the PAT's user, or the member who
/// minted the daemon token — which registers only its own daemon_id.
fn owner_for(
    caller: &Caller,
    workspace_id: WorkspaceId,
    daemon_id: &str,
) -> Result<UserId, ApiError> {
    match caller {
        Caller::User { user_id } => Ok(*user_id),
        // a task token reaches its own task only
        Caller::Task(_) => Err(ApiError::not_found("workspace not found")),
        Caller::Daemon(daemon) => {
            // out-of-workspace first, so other workspaces cannot be probed
            if daemon.workspace_id != workspace_id {
                return Err(ApiError::not_found("workspace not found"));
            }
            if daemon.daemon_id != daemon_id {
                return Err(ApiError::forbidden(format!(
                    "this daemon token was minted for daemon_id {:?}",
                    daemon.daemon_id
                )));
            }
            daemon.minted_by.ok_or_else(|| {
                ApiError::forbidden("the member who minted this daemon token is gone")
            })
        }
    }
}

/// What every runtime of one registration shares.
struct Machine {
    workspace_id: WorkspaceId,
    daemon_id: String,
    device_name: String,
    cli_version: String,
    launched_by: String,
    owner: UserId,
}

impl Machine {
    /// `{version, cli_version}`, plus `launched_by` when the daemon said.
    fn metadata(&self, version: &str) -> serde_json::Value {
        let mut metadata = json!({"version": version, "cli_version": self.cli_version});
        if !self.launched_by.is_empty() {
            metadata["launched_by"] = json!(self.launched_by);
        }
        metadata
    }

    /// `name (device_name)`, or the name alone on an unnamed device.
    fn label(&self, name: &str) -> String {
        if self.device_name.is_empty() {
            name.to_string()
        } else {
            format!("{name} ({})", self.device_name)
        }
    }

    fn row(&self, provider: String, name: String, status: RuntimeStatus) -> Registration {
        Registration {
            workspace_id: self.workspace_id,
            daemon_id: self.daemon_id.clone(),
            provider,
            name,
            status,
            device_info: String::new(),
            metadata: String::new(),
            owner: self.owner,
            offline_reason: None,
        }
    }
}

/// One runtime of the request, with the protocol's defaults applied.
fn registration(machine: &Machine, i: usize, spec: &RuntimeSpec) -> Result<Registration, ApiError> {
    let field = |name: &str| format!("runtimes[{i}].{name}");
    let provider = Some(short_text(spec.kind.as_deref(), &field("type"))?)
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    let version = short_text(spec.version.as_deref(), &field("version"))?;
    let name = Some(short_text(spec.name.as_deref(), &field("name"))?)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| machine.label(&provider));
    let status = match short_text(spec.status.as_deref(), &field("status"))?.as_str() {
        "offline" => RuntimeStatus::Offline,
        _ => RuntimeStatus::Online,
    };
    let mut row = machine.row(provider, name, status);
    row.device_info = [machine.device_name.as_str(), version.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" · ");
    row.metadata = machine.metadata(&version).to_string();
    Ok(row)
}

/// A failed custom runtime profile as an offline runtime of its own,
/// keyed `profile:<profile_id>` so it never stands in for a runtime the
/// daemon does run; `None` for an entry without a profile id.
fn failed_profile(
    machine: &Machine,
    i: usize,
    failed: &FailedProfile,
) -> Result<Option<Registration>, ApiError> {
    let field = |name: &str| format!("failed_profiles[{i}].{name}");
    let profile = short_text(failed.profile_id.as_deref(), &field("profile_id"))?;
    if profile.is_empty() {
        return Ok(None);
    }
    let profile: ProfileId = profile
        .parse()
        .map_err(|e| ApiError::bad_request(format!("invalid {}: {e}", field("profile_id"))))?;
    let command = short_text(failed.command_name.as_deref(), &field("command_name"))?;
    let reason = Some(text(failed.reason.as_deref(), &field("reason"))?)
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "custom runtime command could not be resolved".to_string());
    let shown = if command.is_empty() {
        "custom runtime"
    } else {
        &command
    };
    let mut row = machine.row(
        format!("profile:{profile}"),
        machine.label(shown),
        RuntimeStatus::Offline,
    );
    row.device_info = machine.device_name.clone();
    let mut metadata = machine.metadata("");
    metadata["profile_id"] = json!(profile);
    metadata["command_name"] = json!(command);
    row.metadata = metadata.to_string();
    let detail = crate::probes::clip(reason);
    row.offline_reason = Some(json!({"code": "profile_failed", "detail": detail}).to_string());
    Ok(Some(row))
}

/// The former daemon ids, trimmed, without blanks, repeats or the current
/// id.
fn legacy_ids(req: &RegisterRequest, daemon_id: &str) -> Result<Vec<String>, ApiError> {
    let given = req.legacy_daemon_ids.as_deref().unwrap_or_default();
    if given.len() > MAX_LEGACY_DAEMON_IDS {
        return Err(ApiError::bad_request(format!(
            "legacy_daemon_ids carries at most {MAX_LEGACY_DAEMON_IDS} ids"
        )));
    }
    let mut ids: Vec<String> = Vec::new();
    for (i, id) in given.iter().enumerate() {
        let id = short_text(id.as_deref(), &format!("legacy_daemon_ids[{i}]"))?;
        if !id.is_empty() && id != daemon_id && !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The workspace and daemon id a request names.
fn ids(req: &RegisterRequest) -> Result<(WorkspaceId, String), ApiError> {
    let workspace_id: WorkspaceId = required(req.workspace_id.as_deref(), "workspace_id")?
        .parse()
        .map_err(|e| ApiError::bad_request(format!("invalid workspace_id: {e}")))?;
    let daemon_id = short_text(req.daemon_id.as_deref(), "daemon_id")?;
    if daemon_id.is_empty() {
        return Err(ApiError::bad_request("daemon_id is required"));
    }
    Ok((workspace_id, daemon_id))
}

/// The machine a request describes, and the member it acts for.
fn machine(
    req: &RegisterRequest,
    caller: &Caller,
    workspace_id: WorkspaceId,
    daemon_id: String,
) -> Result<Machine, ApiError> {
    Ok(Machine {
        owner: owner_for(caller, workspace_id, &daemon_id)?,
        workspace_id,
        daemon_id,
        device_name: short_text(req.device_name.as_deref(), "device_name")?,
        cli_version: short_text(req.cli_version.as_deref(), "cli_version")?,
        launched_by: short_text(req.launched_by.as_deref(), "launched_by")?,
    })
}

/// Turns the request into validated rows (before any database work).
pub(super) fn parse(req: &RegisterRequest, caller: &Caller) -> Result<Parsed, ApiError> {
    let (workspace_id, daemon_id) = ids(req)?;
    let specs = req.runtimes.as_deref().unwrap_or_default();
    let failed = req.failed_profiles.as_deref().unwrap_or_default();
    if specs.is_empty() && failed.is_empty() {
        return Err(ApiError::bad_request("at least one runtime is required"));
    }
    if specs.len() + failed.len() > MAX_RUNTIMES_PER_REGISTRATION {
        return Err(ApiError::bad_request(format!(
            "a registration carries at most {MAX_RUNTIMES_PER_REGISTRATION} runtimes"
        )));
    }
    let machine = machine(req, caller, workspace_id, daemon_id)?;
    let legacy = legacy_ids(req, &machine.daemon_id)?;
    let active = crate::api::daemon_tasks::active_task_ids(req.active_task_ids.as_deref())?;
    let runtimes = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| registration(&machine, i, spec))
        .collect::<Result<Vec<_>, _>>()?;
    let mut failed_rows = Vec::new();
    for (i, entry) in failed.iter().enumerate() {
        failed_rows.extend(failed_profile(&machine, i, entry)?);
    }
    Ok(Parsed {
        workspace_id,
        legacy: match caller {
            Caller::User { .. } => legacy,
            Caller::Daemon(_) | Caller::Task(_) => Vec::new(),
        },
        daemon_id: machine.daemon_id,
        owner: machine.owner,
        runtimes,
        failed: failed_rows,
        active,
    })
}

/// Most runtimes a workspace may hold; a registration that would add more
/// is a 409.
pub const MAX_RUNTIMES_PER_WORKSPACE: i64 = 50_000;

/// Refuses a registration that would grow the workspace past
/// [`MAX_RUNTIMES_PER_WORKSPACE`]: one index lookup per runtime, and one
/// read of the workspace's runtime counter when a runtime would be added.
pub(super) fn check_capacity(
    tx: &Conn<'_>,
    workspace: WorkspaceId,
    regs: &[&Registration],
) -> Result<(), ApiError> {
    let count = runtimes::count_in_workspace(tx, workspace)?;
    // far from the cap, whichever rows are new fit: no need to look
    if count + regs.len() as i64 <= MAX_RUNTIMES_PER_WORKSPACE {
        return Ok(());
    }
    let mut new = 0;
    for reg in regs {
        if !runtimes::exists(tx, workspace, &reg.daemon_id, &reg.provider)? {
            new += 1;
        }
    }
    if new > 0 && count + new > MAX_RUNTIMES_PER_WORKSPACE {
        return Err(ApiError::conflict(format!(
            "this workspace already has the most runtimes allowed ({MAX_RUNTIMES_PER_WORKSPACE}); delete unused ones first"
        )));
    }
    Ok(())
}
