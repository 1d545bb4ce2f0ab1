//! The daemon's work-directory collection asks whether the task or issue a
//! directory was made for is over. A daemon deletes a directory on a
//! terminal answer (task: `completed`/`failed`/`cancelled` at once; issue:
//! `done`/`cancelled` once `updated_at` is older than its TTL), deletes
//! one by its age on a 404 or `found:false`, and keeps it on anything else.
//!
//! An issue is a free reference on agenthub's tasks, so its state is made
//! up from the tasks carrying it that the caller reaches (those of the
//! runtimes it acts for): work waiting or under way keeps it open, so a
//! directory still in use is never reported as over.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::access::{daemon_runtime, require_daemon_task, require_daemon_workspace};
use crate::auth::Caller;
use crate::domain::{RuntimeId, TaskId, TaskStatus, Timestamp, WorkspaceId};
use crate::error::ApiError;
use crate::store::tasks::{self, IssueTasks, MAX_ISSUE_ID_BYTES};
use crate::store::{Conn, Store};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/daemon/tasks/{id}/gc-check", web::get().to(task_gc_check))
        .route(
            "/daemon/issues/{issue_id}/gc-check",
            web::get().to(issue_gc_check),
        )
        .route(
            "/daemon/workspaces/{id}/issues/gc-check",
            web::post().to(workspace_issues_gc_check),
        );
}

#[derive(Serialize)]
struct TaskGcStatus {
    status: TaskStatus,
    /// null until the task ends
    completed_at: Option<Timestamp>,
}

async fn task_gc_check(
    db: web::Data<Store>,
    caller: Caller,
    path: web::Path<TaskId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let task = db
        .read(move |conn| require_daemon_task(conn, &caller, id))
        .await?;
    Ok(HttpResponse::Ok().json(TaskGcStatus {
        status: task.status,
        completed_at: task.completed_at,
    }))
}

/// An issue's state as a daemon's collection reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct IssueState {
    /// `todo` (only queued work), `in_progress` (work dispatched or
    /// running), else after the last task to finish: `done` (completed),
    /// `cancelled`, `blocked` (failed: its directory is kept for a look)
    status: &'static str,
    updated_at: Timestamp,
}

/// How the ends of tasks sort: by time, then (at one instant) by the
/// status's word, as the stored text does.
fn finish_key((at, status): &(Timestamp, TaskStatus)) -> (Timestamp, &'static str) {
    (*at, status.as_str())
}

/// The state of one issue from its (issue, runtime) groups the caller
/// reaches; `None` when there are none.
fn issue_state<'a>(groups: impl Iterator<Item = &'a IssueTasks>) -> Option<IssueState> {
    let (mut active, mut queued) = (false, false);
    let mut updated_at: Option<Timestamp> = None;
    let mut last: Option<&(Timestamp, TaskStatus)> = None;
    for group in groups {
        active |= group.active;
        queued |= group.queued;
        updated_at = updated_at.max(Some(group.updated_at));
        if let Some(finished) = &group.last_finished {
            if last.is_none_or(|l| finish_key(l) <= finish_key(finished)) {
                last = Some(finished);
            }
        }
    }
    let status = match (active, queued, last) {
        (true, _, _) => "in_progress",
        (false, true, _) => "todo",
        (false, false, Some((_, status))) => match status {
            TaskStatus::Completed => "done",
            TaskStatus::Cancelled => "cancelled",
            _ => "blocked",
        },
        (false, false, None) => return None,
    };
    Some(IssueState {
        status,
        updated_at: updated_at?,
    })
}

/// The groups whose runtime the caller acts for (each runtime checked once).
fn reachable(
    conn: &Conn<'_>,
    caller: &Caller,
    mut groups: Vec<IssueTasks>,
) -> Result<Vec<IssueTasks>, ApiError> {
    let mut acts: HashMap<RuntimeId, bool> = HashMap::new();
    for runtime in groups.iter().filter_map(|g| g.runtime_id) {
        if let Entry::Vacant(slot) = acts.entry(runtime) {
            slot.insert(daemon_runtime(conn, caller, runtime)?.is_some());
        }
    }
    groups.retain(|g| g.runtime_id.is_some_and(|r| acts.get(&r) == Some(&true)));
    Ok(groups)
}

fn check_issue_id(id: &str) -> Result<(), ApiError> {
    super::no_nul(id, "issue_id")?;
    super::at_most(id, "issue_id", MAX_ISSUE_ID_BYTES)
}

/// `{status, updated_at}` of an issue, from the tasks carrying it in any
/// workspace that the caller reaches; 404 `issue not found` when there are
/// none (the daemon then goes by the directory's age).
async fn issue_gc_check(
    db: web::Data<Store>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let issue = path.into_inner();
    check_issue_id(&issue)?;
    let state = db
        .read(move |conn| -> Result<_, ApiError> {
            let groups = tasks::issue_tasks(conn, None, &[issue])?;
            Ok(issue_state(reachable(conn, &caller, groups)?.iter()))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("issue not found"))?;
    Ok(HttpResponse::Ok().json(state))
}

/// Issues one batch may name, as the daemon sends them.
pub const MAX_GC_BATCH: usize = 500;

#[derive(Deserialize)]
struct IssueBatch {
    #[serde(default)]
    issue_ids: Vec<String>,
}

#[derive(Serialize)]
struct IssueResult {
    id: String,
    found: bool,
    status: Option<&'static str>,
    updated_at: Option<Timestamp>,
}

#[derive(Serialize)]
struct IssueResults {
    issues: Vec<IssueResult>,
}

/// One answer per issue id, in the order asked, from the tasks of the
/// workspace that the caller reaches: `found:false` for an issue none of
/// them carries. 404 `workspace not found` for a workspace the caller does
/// not reach.
async fn workspace_issues_gc_check(
    db: web::Data<Store>,
    caller: Caller,
    path: web::Path<WorkspaceId>,
    body: web::Json<IssueBatch>,
) -> Result<HttpResponse, ApiError> {
    let workspace = path.into_inner();
    let ids = body.into_inner().issue_ids;
    if ids.len() > MAX_GC_BATCH {
        return Err(ApiError::bad_request(format!(
            "a check names at most {MAX_GC_BATCH} issue_ids"
        )));
    }
    ids.iter().try_for_each(|id| check_issue_id(id))?;
    let issues = db
        .read(move |conn| -> Result<_, ApiError> {
            require_daemon_workspace(conn, &caller, workspace)?;
            let groups = tasks::issue_tasks(conn, Some(workspace), &ids)?;
            let groups = reachable(conn, &caller, groups)?;
            Ok(ids
                .into_iter()
                .map(|id| {
                    let state = issue_state(groups.iter().filter(|g| g.issue_id == id));
                    IssueResult {
                        found: state.is_some(),
                        status: state.as_ref().map(|s| s.status),
                        updated_at: state.map(|s| s.updated_at),
                        id,
                    }
                })
                .collect())
        })
        .await?;
    Ok(HttpResponse::Ok().json(IssueResults { issues }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(active: bool, queued: bool, updated: &str, last: Option<(&str, &str)>) -> IssueTasks {
        IssueTasks {
            issue_id: "I-1".into(),
            runtime_id: None,
            active,
            queued,
            updated_at: updated.parse().unwrap(),
            last_finished: last.map(|(a, s)| (a.parse().unwrap(), s.parse().unwrap())),
        }
    }

    const T1: &str = "2026-01-01T00:00:00.000Z";
    const T2: &str = "2026-01-02T00:00:00.000Z";

    #[test]
    fn work_waiting_or_under_way_keeps_an_issue_open() {
        let done = group(false, false, T2, Some((T2, "completed")));
        let running = group(true, false, T1, None);
        let queued = group(false, true, T1, Some((T1, "cancelled")));
        let state = issue_state([&done, &running].into_iter()).unwrap();
        assert_eq!(state.status, "in_progress");
        assert_eq!(state.updated_at.to_string(), "2026-01-02T00:00:00Z");
        assert_eq!(
            issue_state([&done, &queued].into_iter()).unwrap().status,
            "todo"
        );
    }

    #[test]
    fn a_finished_issue_takes_the_end_of_its_last_task() {
        let completed = group(false, false, T1, Some((T1, "completed")));
        let failed = group(false, false, T2, Some((T2, "failed")));
        let cancelled = group(false, false, T2, Some((T2, "cancelled")));
        let state = |gs: &[&IssueTasks]| issue_state(gs.iter().copied()).unwrap().status;
        assert_eq!(state(&[&completed]), "done");
        assert_eq!(state(&[&completed, &failed]), "blocked");
        assert_eq!(state(&[&cancelled, &completed]), "cancelled");
        assert_eq!(issue_state(std::iter::empty()), None);
    }
}
