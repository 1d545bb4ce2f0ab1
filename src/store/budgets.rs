//! Budgets (`budget`): spending limits a workspace's owners/admins set on
//! the whole workspace, on one agent, or on the tasks one member queued,
//! per day or month of the workspace's time zone.
//!
//! A budget keeps the spend of its current period as a counter, moved in
//! the transaction of every usage write that charges it ([`charge`]) by
//! what that write changed of the task's cost. A write in a later period
//! than the counter's starts it again, so a period that had no usage shows
//! nothing spent without any sweep. The rules of what a spend means are
//! decided here, once for every engine ([`settle`]): crossing
//! `warn_percent` of the limit marks the period warned, reaching the limit
//! marks it exceeded and sets `blocked_until` to the period's end. Claims
//! skip every queued task a budget blocking now charges (the check is part
//! of each engine's claim statement), so the block ends by itself when the
//! period rolls over, and at once when the limit is raised past the spend.

use chrono::NaiveDate;
use serde::Serialize;
use uuid::Uuid;

use crate::domain::{
    AgentId, BudgetId, BudgetPeriod, BudgetScope, EntityId, RuntimeId, TaskId, Timestamp, UserId,
    WorkspaceId,
};

use super::{dispatch, Conn, Result};

/// The condition a claim puts on the task row `$task` (an alias, as a
/// literal): no budget charging it blocks at `$now` (a parameter). Part of
/// each engine's claim statement, so a claim never dispatches a task a
/// committed block covers.
macro_rules! not_blocked {
    ($task:literal, $now:literal) => {
        concat!(
            "NOT EXISTS (SELECT 1 FROM budget b WHERE b.workspace_id = ",
            $task,
            ".workspace_id AND b.blocked_until > ",
            $now,
            " AND (b.scope = 'workspace' OR (b.scope = 'agent' AND b.scope_id = ",
            $task,
            ".agent_id) OR (b.scope = 'member' AND b.scope_id = ",
            $task,
            ".created_by)))"
        )
    };
}
pub(crate) use not_blocked;

/// The condition a claim puts on the agent row `$agent`: no workspace or
/// agent budget blocks it at `$now`. Checked once per agent before its
/// queue is looked at, so a blocked agent costs a claim one probe however
/// long its queue ([`not_blocked`] then only has member budgets left to
/// pass over, at most an agent's queue of tasks).
macro_rules! agent_not_blocked {
    ($agent:literal, $now:literal) => {
        concat!(
            "NOT EXISTS (SELECT 1 FROM budget b WHERE b.workspace_id = ",
            $agent,
            ".workspace_id AND b.blocked_until > ",
            $now,
            " AND (b.scope = 'workspace' OR (b.scope = 'agent' AND b.scope_id = ",
            $agent,
            ".id)))"
        )
    };
}
pub(crate) use agent_not_blocked;

/// Most budgets one workspace may hold: every list of them is one reply.
pub const MAX_BUDGETS: i64 = 200;

/// Highest limit, in ticks (1e-10 USD): $100,000,000. Spend is counted up
/// to [`SPENT_CAP`], far past it, so no sum overflows.
pub const MAX_LIMIT_TICKS: i64 = 1_000_000_000_000_000_000;

/// Where a counter stops: four times the highest limit.
pub const SPENT_CAP: i64 = 4 * MAX_LIMIT_TICKS;

/// A budget as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub id: BudgetId,
    pub workspace_id: WorkspaceId,
    pub scope: BudgetScope,
    /// The agent's id, or the member's user id; `None` for the workspace.
    pub scope_id: Option<Uuid>,
    pub period: BudgetPeriod,
    pub limit_ticks: i64,
    pub warn_percent: i64,
    /// The period [`Budget::spent_ticks`] counts.
    pub period_start: Timestamp,
    pub spent_ticks: i64,
    /// The start of the period `budget:warning` was published for.
    pub warned_for: Option<Timestamp>,
    /// The start of the period `budget:exceeded` was published for.
    pub exceeded_for: Option<Timestamp>,
    /// Until when claims skip the tasks it charges.
    pub blocked_until: Option<Timestamp>,
    pub created_by: Option<UserId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Budget {
    /// What was spent in the period that starts at `start`: nothing if the
    /// counter is of an earlier one.
    pub fn spent_in(&self, start: Timestamp) -> i64 {
        if self.period_start == start {
            self.spent_ticks
        } else {
            0
        }
    }

    /// Whether it charges the tasks of `agent` queued by `member`.
    pub fn charges(&self, agent: Option<AgentId>, member: Option<UserId>) -> bool {
        match self.scope {
            BudgetScope::Workspace => true,
            BudgetScope::Agent => agent.is_some_and(|a| self.scope_id == Some(a.uuid())),
            BudgetScope::Member => member.is_some_and(|m| self.scope_id == Some(m.uuid())),
        }
    }
}

/// Where the current day and month of a workspace's zone start and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    pub day: (Timestamp, Timestamp),
    pub month: (Timestamp, Timestamp),
}

impl Periods {
    /// The (start, end) of the current period of that length.
    pub fn of(&self, period: BudgetPeriod) -> (Timestamp, Timestamp) {
        match period {
            BudgetPeriod::Daily => self.day,
            BudgetPeriod::Monthly => self.month,
        }
    }
}

/// A budget to create.
pub struct NewBudget {
    pub workspace: WorkspaceId,
    pub scope: BudgetScope,
    pub scope_id: Option<Uuid>,
    pub period: BudgetPeriod,
    pub limit_ticks: i64,
    pub warn_percent: i64,
    /// The current period's start and what was spent in it so far.
    pub period_start: Timestamp,
    pub spent_ticks: i64,
    pub created_by: UserId,
}

/// What [`settle`] found a budget's spend to have crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    /// `warn_percent` of the limit, for the first time in the period.
    Warning,
    /// The limit, for the first time in the period.
    Exceeded,
}

impl Crossing {
    pub fn event(self) -> &'static str {
        match self {
            Crossing::Warning => "budget:warning",
            Crossing::Exceeded => "budget:exceeded",
        }
    }
}

/// A budget after a change, and what its spend crossed with it.
#[derive(Debug, Clone)]
pub struct Settled {
    pub budget: Budget,
    pub crossed: Vec<Crossing>,
    /// Whether it stopped blocking (claims may take its tasks again).
    pub released: bool,
}

/// The marks a budget's spend calls for in the period `(start, end)`, and
/// what changed: a spend at or past `warn_percent` of the limit warns once
/// per period, one at or past the limit blocks until `end` and is
/// reported once per period. A spend back under either (a raised limit)
/// clears the mark, so the new limit is reported when it is reached.
fn marks(budget: &Budget, (start, end): (Timestamp, Timestamp)) -> (Budget, Vec<Crossing>) {
    let spent = i128::from(budget.spent_in(start));
    let limit = i128::from(budget.limit_ticks);
    let mut after = budget.clone();
    let mut crossed = Vec::new();
    if spent * 100 >= limit * i128::from(budget.warn_percent) {
        if budget.warned_for != Some(start) {
            after.warned_for = Some(start);
            crossed.push(Crossing::Warning);
        }
    } else if budget.warned_for == Some(start) {
        after.warned_for = None;
    }
    if spent >= limit {
        after.blocked_until = Some(end);
        if budget.exceeded_for != Some(start) {
            after.exceeded_for = Some(start);
            crossed.push(Crossing::Exceeded);
        }
    } else {
        after.blocked_until = None;
        if budget.exceeded_for == Some(start) {
            after.exceeded_for = None;
        }
    }
    (after, crossed)
}

/// Brings a budget's marks in line with its spend (see [`marks`]), storing
/// them if they change.
pub fn settle(conn: &Conn<'_>, budget: Budget, periods: &Periods) -> Result<Settled> {
    let now = Timestamp::now();
    let (after, crossed) = marks(&budget, periods.of(budget.period));
    let released =
        budget.blocked_until.is_some_and(|until| until > now) && after.blocked_until.is_none();
    if after != budget {
        store_marks(conn, &after)?;
    }
    Ok(Settled {
        budget: after,
        crossed,
        released,
    })
}

/// Stores a budget's period start and marks as `budget` holds them.
fn store_marks(conn: &Conn<'_>, budget: &Budget) -> Result<()> {
    dispatch!(
        conn,
        budgets::set_marks(
            budget.id,
            budget.period_start,
            budget.warned_for,
            budget.exceeded_for,
            budget.blocked_until
        )
    )
}

/// Moves a budget's period and marks `by` into the past, as if its period
/// had begun that long before: how tests reach a rollover.
#[doc(hidden)]
pub fn backdate(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    id: BudgetId,
    by: chrono::Duration,
) -> Result<()> {
    let Some(mut budget) = get(conn, workspace, id)? else {
        return Ok(());
    };
    budget.period_start = budget.period_start - by;
    budget.warned_for = budget.warned_for.map(|t| t - by);
    budget.exceeded_for = budget.exceeded_for.map(|t| t - by);
    budget.blocked_until = budget.blocked_until.map(|t| t - by);
    store_marks(conn, &budget)
}

/// A change of cost to charge: what a usage write of a task of `agent`
/// queued by `member` changed its cost by.
pub struct Charge {
    pub workspace: WorkspaceId,
    pub agent: Option<AgentId>,
    pub member: Option<UserId>,
    pub ticks: i64,
}

/// Locks the rows of the budgets a charge moves (where the engine has row
/// locks), before the charge's periods are read from the clock: a charge
/// that waited for another's lock reads a later time than it, so no
/// counter is moved back to a period that has ended.
pub fn lock_charged(conn: &Conn<'_>, charge: &Charge) -> Result<()> {
    dispatch!(
        conn,
        budgets::lock_charged(charge.workspace, charge.agent, charge.member)
    )
}

/// Adds a charge to the counters of every budget its task is charged to
/// (in their current period; call [`lock_charged`] first), then settles
/// each (see [`settle`]). Charges are never negative: a report that lowers
/// a task's totals takes nothing back, so only a raise, a deletion or the
/// end of the period lifts a block.
pub fn charge(conn: &Conn<'_>, charge: &Charge, periods: &Periods) -> Result<Vec<Settled>> {
    if charge.ticks <= 0 {
        return Ok(Vec::new());
    }
    let ticks = charge.ticks.min(SPENT_CAP);
    let charged: Result<Vec<Budget>> = dispatch!(
        conn,
        budgets::charge(
            charge.workspace,
            charge.agent,
            charge.member,
            ticks,
            periods
        )
    );
    charged?
        .into_iter()
        .map(|b| settle(conn, b, periods))
        .collect()
}

/// Holds the workspace's budgets still for the rest of a usage write (a
/// shared lock, where the engine has locks): a budget created meanwhile
/// either counts the write's usage in its starting spend or is charged by
/// the write, never neither.
pub fn hold_for_spending(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<()> {
    dispatch!(conn, budgets::hold(workspace, false))
}

/// The exclusive side of [`hold_for_spending`]: taken by whatever computes
/// a budget's spend from stored usage (creating one, a new time zone).
pub fn hold_for_counting(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<()> {
    dispatch!(conn, budgets::hold(workspace, true))
}

/// Starts a budget's counter over: `spent` in the period from `start`.
pub fn restart(
    conn: &Conn<'_>,
    id: BudgetId,
    start: Timestamp,
    spent: i64,
) -> Result<Option<Budget>> {
    dispatch!(conn, budgets::restart(id, start, spent.clamp(0, SPENT_CAP)))
}

/// Whether the workspace has a budget (usage writes of one without skip
/// pricing their change).
pub fn any(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<bool> {
    dispatch!(conn, budgets::any(workspace))
}

/// The workspace's budgets, oldest first (at most [`MAX_BUDGETS`]).
pub fn list(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<Vec<Budget>> {
    dispatch!(conn, budgets::list(workspace))
}

/// The workspace's budget `id`, locked inside a write.
pub fn get(conn: &Conn<'_>, workspace: WorkspaceId, id: BudgetId) -> Result<Option<Budget>> {
    let lock = conn.writing();
    dispatch!(conn, budgets::get(workspace, id, lock))
}

pub fn count(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<i64> {
    dispatch!(conn, budgets::count(workspace))
}

/// Whether a budget of that scope and period exists in the workspace.
pub fn exists(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    scope: BudgetScope,
    scope_id: Option<Uuid>,
    period: BudgetPeriod,
) -> Result<bool> {
    dispatch!(conn, budgets::exists(workspace, scope, scope_id, period))
}

pub fn insert(conn: &Conn<'_>, new: &NewBudget) -> Result<Budget> {
    dispatch!(
        conn,
        budgets::insert(new, BudgetId::new(), Timestamp::now())
    )
}

/// Sets a budget's limit and warning threshold.
pub fn update(
    conn: &Conn<'_>,
    id: BudgetId,
    limit_ticks: i64,
    warn_percent: i64,
) -> Result<Option<Budget>> {
    dispatch!(
        conn,
        budgets::update(id, limit_ticks, warn_percent, Timestamp::now())
    )
}

pub fn delete(conn: &Conn<'_>, workspace: WorkspaceId, id: BudgetId) -> Result<bool> {
    dispatch!(conn, budgets::delete(workspace, id))
}

/// The workspace's budgets blocking claims at `now`.
pub fn blocking(conn: &Conn<'_>, workspace: WorkspaceId, now: Timestamp) -> Result<Vec<Budget>> {
    dispatch!(conn, budgets::blocking(workspace, now))
}

/// One (UTC day, provider, model) of a member's task usage: the tokens of
/// rows with no reported cost, and the reported cost of the others.
#[derive(Debug, Clone)]
pub struct DayUsage {
    pub day: NaiveDate,
    pub provider: String,
    pub model: String,
    pub uncosted: [i64; 4],
    pub reported_ticks: i64,
}

/// The usage first recorded since `since` of the tasks `member` queued in
/// the workspace, per UTC day, provider and model: where a member budget
/// created mid-period starts.
pub fn member_usage(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    member: UserId,
    since: Timestamp,
) -> Result<Vec<DayUsage>> {
    dispatch!(conn, budgets::member_usage(workspace, member, since))
}

/// A queued task of each runtime with queued work in the workspace (at
/// most [`MAX_WAKEUPS`]): what to wake once a budget stops blocking.
pub fn queued_runtimes(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
) -> Result<Vec<(RuntimeId, TaskId)>> {
    dispatch!(conn, budgets::queued_runtimes(workspace, MAX_WAKEUPS))
}

/// Most runtimes woken when a budget stops blocking; the rest claim at
/// their next poll.
pub const MAX_WAKEUPS: i64 = 1000;

/// Why a queued task waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockedReason {
    /// A budget charging it reached its limit this period.
    BudgetExceeded,
}

/// Sets `blocked_reason` on the queued tasks among `tasks` that a budget
/// blocking now charges (one read of the blocking budgets per workspace).
pub fn mark_blocked(conn: &Conn<'_>, tasks: &mut [super::tasks::Task]) -> Result<()> {
    let now = Timestamp::now();
    let mut seen: Vec<(WorkspaceId, Vec<Budget>)> = Vec::new();
    for task in tasks.iter_mut() {
        if task.status != crate::domain::TaskStatus::Queued {
            continue;
        }
        let at = match seen.iter().position(|(w, _)| *w == task.workspace_id) {
            Some(at) => at,
            None => {
                seen.push((task.workspace_id, blocking(conn, task.workspace_id, now)?));
                seen.len() - 1
            }
        };
        if seen[at]
            .1
            .iter()
            .any(|b| b.charges(task.agent_id, task.created_by))
        {
            task.blocked_reason = Some(BlockedReason::BudgetExceeded);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a time")
    }

    fn budget(spent: i64) -> Budget {
        Budget {
            id: BudgetId::new(),
            workspace_id: WorkspaceId::new(),
            scope: BudgetScope::Workspace,
            scope_id: None,
            period: BudgetPeriod::Daily,
            limit_ticks: 1000,
            warn_percent: 80,
            period_start: at("2026-12-07T00:00:00Z"),
            spent_ticks: spent,
            warned_for: None,
            exceeded_for: None,
            blocked_until: None,
            created_by: None,
            created_at: at("2026-12-07T00:00:00Z"),
            updated_at: at("2026-12-07T00:00:00Z"),
        }
    }

    const TODAY: (&str, &str) = ("2026-12-07T00:00:00Z", "2026-12-08T00:00:00Z");

    fn today() -> (Timestamp, Timestamp) {
        (at(TODAY.0), at(TODAY.1))
    }

    #[test]
    fn each_line_is_crossed_once_per_period() {
        let (b, crossed) = marks(&budget(799), today());
        assert!(crossed.is_empty());
        assert_eq!(b.warned_for, None);
        let (b, crossed) = marks(&budget(800), today());
        assert_eq!(crossed, vec![Crossing::Warning]);
        let (b, crossed) = marks(
            &Budget {
                spent_ticks: 999,
                ..b
            },
            today(),
        );
        assert!(crossed.is_empty(), "warned already this period");
        assert_eq!(b.blocked_until, None);
        let (b, crossed) = marks(
            &Budget {
                spent_ticks: 1000,
                ..b
            },
            today(),
        );
        assert_eq!(crossed, vec![Crossing::Exceeded]);
        assert_eq!(b.blocked_until, Some(at(TODAY.1)));
        let (_, crossed) = marks(
            &Budget {
                spent_ticks: 5000,
                ..b
            },
            today(),
        );
        assert!(crossed.is_empty(), "exceeded already this period");
    }

    #[test]
    fn one_write_past_both_lines_crosses_both() {
        let (b, crossed) = marks(&budget(2000), today());
        assert_eq!(crossed, vec![Crossing::Warning, Crossing::Exceeded]);
        assert_eq!(b.exceeded_for, Some(at(TODAY.0)));
    }

    #[test]
    fn a_raised_limit_releases_and_rearms() {
        let (b, _) = marks(&budget(1000), today());
        let (b, crossed) = marks(
            &Budget {
                limit_ticks: 2000,
                ..b
            },
            today(),
        );
        assert!(crossed.is_empty());
        assert_eq!(
            (b.blocked_until, b.exceeded_for, b.warned_for),
            (None, None, None)
        );
        let (_, crossed) = marks(
            &Budget {
                spent_ticks: 2000,
                ..b
            },
            today(),
        );
        assert_eq!(crossed, vec![Crossing::Warning, Crossing::Exceeded]);
    }

    #[test]
    fn a_counter_of_an_earlier_period_counts_nothing() {
        let tomorrow = (at("2026-12-08T00:00:00Z"), at("2026-12-09T00:00:00Z"));
        let (b, _) = marks(&budget(1000), today());
        let (b, crossed) = marks(&b, tomorrow);
        assert!(crossed.is_empty());
        assert_eq!(b.blocked_until, None);
        assert_eq!(b.spent_in(tomorrow.0), 0);
    }
}
