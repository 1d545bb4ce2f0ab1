//! The claim and transition statements against concurrent writers: two
//! connections on one file, each playing one side of a race.

use super::*;
use crate::store::sqlite::{scratch_connection as connect, scratch_database};

/// A migrated file with one runtime and one agent (at most `limit`
/// tasks at once), and two connections to it: two claimers.
struct TwoClaimers {
    _dir: tempfile::TempDir,
    a: Connection,
    b: Connection,
    workspace: WorkspaceId,
    runtime: RuntimeId,
    agent: AgentId,
}

fn two_claimers(limit: i64) -> TwoClaimers {
    let (dir, path) = scratch_database();
    let (a, b) = (connect(&path), connect(&path));
    let (workspace, runtime, agent) = (WorkspaceId::new(), RuntimeId::new(), AgentId::new());
    a.execute(
        "INSERT INTO workspace (id, name, slug, created_at, updated_at)
         VALUES (?1, 'w', 'w', ?2, ?2)",
        params![workspace, Timestamp::now()],
    )
    .expect("workspace");
    a.execute(
        "INSERT INTO agent_runtime (id, workspace_id, daemon_id, name, runtime_mode, provider,
             status, created_at, updated_at)
         VALUES (?1, ?2, 'mbp', 'claude', 'local', 'claude', 'online', ?3, ?3)",
        params![runtime, workspace, Timestamp::now()],
    )
    .expect("runtime");
    a.execute(
        "INSERT INTO agent (id, workspace_id, runtime_id, name, runtime_mode,
             max_concurrent_tasks, created_at, updated_at)
         VALUES (?1, ?2, ?3, 'fixer', 'local', ?4, ?5, ?5)",
        params![agent, workspace, runtime, limit, Timestamp::now()],
    )
    .expect("agent");
    TwoClaimers {
        _dir: dir,
        a,
        b,
        workspace,
        runtime,
        agent,
    }
}

impl TwoClaimers {
    fn queue(&self, prompt: &str) -> TaskId {
        let id = TaskId::new();
        self.a
            .execute(
                "INSERT INTO agent_task_queue (id, workspace_id, agent_id, prompt, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, self.workspace, self.agent, prompt, Timestamp::now()],
            )
            .expect("task");
        id
    }

    /// The task a claimer would pick now, as the claim's first
    /// statement picks it.
    fn chosen_by_b(&self) -> Option<TaskId> {
        self.b
            .query_row(
                NEXT_CLAIMABLE,
                params![json_list(&[self.runtime]).unwrap(), Timestamp::now()],
                |r| r.get(0),
            )
            .optional()
            .expect("candidate")
    }
}

#[test]
fn two_claimers_that_chose_one_task_dispatch_it_once() {
    let db = two_claimers(6);
    let task = db.queue("only one");
    // both pick the task before either writes (as two transactions of
    // an engine with concurrent writers do)
    assert_eq!(db.chosen_by_b(), Some(task));
    let first = claim_task(&db.a, &[db.runtime], task).expect("claim a");
    let first = first.expect("the first claimer gets it");
    assert_eq!(first.status, TaskStatus::Dispatched);
    assert_eq!(first.runtime_id, Some(db.runtime));
    // the second runs its statement on the row as it is now
    let second = claim_task(&db.b, &[db.runtime], task).expect("claim b");
    assert!(second.is_none(), "handed out twice: {second:?}");
    let stored = get(&db.b, task, false).expect("read").expect("task");
    assert_eq!(stored.status, TaskStatus::Dispatched);
    assert_eq!(stored.dispatched_at, first.dispatched_at);
}

#[test]
fn two_claimers_never_take_an_agents_last_slot_twice() {
    let db = two_claimers(1);
    let first = db.queue("first");
    let second = db.queue("second");
    assert_eq!(db.chosen_by_b(), Some(first));
    let claimed = claim_any(&db.a, &[db.runtime]).expect("claim a");
    assert_eq!(claimed.map(|t| t.id), Some(first));
    // b had seen the agent with its slot free; the slot is gone now
    let late = claim_task(&db.b, &[db.runtime], second).expect("claim b");
    assert!(late.is_none(), "limit overrun: {late:?}");
    assert!(claim_any(&db.b, &[db.runtime]).expect("claim b").is_none());
    let status = get(&db.b, second, false)
        .expect("read")
        .expect("task")
        .status;
    assert_eq!(status, TaskStatus::Queued);
}

#[test]
fn claims_keep_priority_then_age_order() {
    let db = two_claimers(6);
    let low = db.queue("low");
    let high = db.queue("high");
    db.a.execute(
        "UPDATE agent_task_queue SET priority = 5 WHERE id = ?1",
        [high],
    )
    .expect("priority");
    let order: Vec<_> = (0..3)
        .map(|_| {
            claim_any(&db.a, &[db.runtime])
                .expect("claim")
                .map(|t| t.id)
        })
        .collect();
    assert_eq!(order, [Some(high), Some(low), None]);
}

#[test]
fn a_transition_never_overwrites_a_concurrent_one() {
    let db = two_claimers(6);
    let task = db.queue("work");
    claim_any(&db.a, &[db.runtime]).expect("claim");
    apply(&db.a, task, Transition::Start, &Outcome::default()).expect("start");
    // b read the task while it was running and decided to fail it; a
    // completed it first
    let done = apply(
        &db.a,
        task,
        Transition::Complete,
        &Outcome {
            result: Some("{}"),
            ..Outcome::default()
        },
    )
    .expect("complete");
    assert_eq!(done.map(|t| t.status), Some(TaskStatus::Completed));
    let late = apply(
        &db.b,
        task,
        Transition::Fail,
        &Outcome {
            error: Some("lost"),
            ..Outcome::default()
        },
    )
    .expect("fail");
    assert!(late.is_none(), "overwrote the completion: {late:?}");
    let stored = get(&db.b, task, false).expect("read").expect("task");
    assert_eq!((stored.status, stored.error), (TaskStatus::Completed, None));
}

#[test]
fn a_lease_is_only_set_on_a_task_still_dispatched_to_the_runtime() {
    let db = two_claimers(6);
    let task = db.queue("work");
    claim_any(&db.a, &[db.runtime]).expect("claim");
    let until = Timestamp::now();
    let leased = set_prepare_lease(&db.a, task, db.runtime, until).expect("lease");
    assert!(leased.is_some_and(|t| t.prepare_lease_expires_at.is_some()));
    let other = set_prepare_lease(&db.a, task, RuntimeId::new(), until).expect("lease");
    assert!(other.is_none());
    apply(&db.a, task, Transition::Start, &Outcome::default()).expect("start");
    let late = set_prepare_lease(&db.b, task, db.runtime, until).expect("lease");
    assert!(late.is_none(), "leased a running task: {late:?}");
}
