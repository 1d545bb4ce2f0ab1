//! Outbound webhooks: the endpoints a workspace registers, and the outbox
//! of their deliveries.
//!
//! Events are not written here: the schema's triggers write each one (and
//! its deliveries, one per webhook of the workspace that wants its type)
//! in the transaction of the change that causes it, whichever code path
//! makes the change. This module hands due deliveries to the sender
//! ([`take_due`]) under a lease, so a sender that dies mid-delivery leaves
//! it to be sent again, and records what each attempt met ([`record`]).

use serde::Serialize;
use serde_json::Value;

use crate::domain::{Timestamp, UserId, WebhookId, WorkspaceId};

use super::{dispatch, Conn, Result};

/// The event types a webhook may ask for.
pub const EVENT_TYPES: &[&str] = &[
    "runtime:offline",
    "runtime:online",
    "task:failed",
    "task:expired",
    "budget:warning",
    "budget:exceeded",
    "agent:status",
];

/// Most webhooks one workspace registers.
pub const MAX_PER_WORKSPACE: i64 = 20;

/// Most deliveries one page of a webhook's deliveries lists.
pub const MAX_DELIVERIES_PAGE: i64 = 100;

/// A registered endpoint. Its secret never leaves the store but in the
/// reply that creates it.
#[derive(Debug, Clone, Serialize)]
pub struct Webhook {
    pub id: WebhookId,
    pub workspace_id: WorkspaceId,
    pub url: String,
    pub events: Vec<String>,
    #[serde(skip)]
    pub secret: String,
    pub created_by: Option<UserId>,
    pub created_at: Timestamp,
}

/// One attempt at a delivery, as stored and shown.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Attempt {
    pub at: Timestamp,
    /// The endpoint's HTTP status; none when no reply came.
    pub status_code: Option<u16>,
    /// Why it did not count as delivered; none when it did.
    pub error: Option<String>,
}

/// A delivery as `GET /api/webhooks/{id}/deliveries` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    #[serde(skip)]
    pub seq: i64,
    pub event_id: String,
    pub event: String,
    pub event_created_at: Timestamp,
    /// `pending`, `delivered` or `failed` (given up after
    /// [`GIVE_UP_AFTER_SECS`]).
    pub status: String,
    pub attempts: Vec<Attempt>,
    /// When it is tried next; null once it is final.
    pub next_attempt_at: Option<Timestamp>,
}

/// A delivery handed to the sender, with what it sends.
#[derive(Debug, Clone)]
pub struct Due {
    pub webhook_id: WebhookId,
    pub seq: i64,
    pub url: String,
    pub secret: String,
    pub event_id: String,
    pub event: String,
    pub workspace_id: WorkspaceId,
    pub payload: Value,
    pub created_at: Timestamp,
    pub attempts: usize,
}

/// How long a delivery is retried, from its event on: 24 hours.
pub const GIVE_UP_AFTER_SECS: i64 = 24 * 3600;

/// The wait after the `n`th failed attempt (from 1): 5 s, doubling, at
/// most an hour.
pub fn backoff_secs(n: usize) -> i64 {
    let doublings = u32::try_from(n.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(10);
    (5_i64 << doublings).min(3600)
}

/// Most attempts a delivery keeps in its list: 5 s doubling to an hour
/// fills 24 hours with fewer.
pub const MAX_ATTEMPTS_KEPT: usize = 40;

pub fn create(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    url: &str,
    events: &[String],
    secret: &str,
    by: UserId,
) -> Result<Webhook> {
    dispatch!(
        conn,
        webhooks::create(workspace, url, events, secret, by, Timestamp::now())
    )
}

pub fn count(conn: &Conn<'_>, workspace: WorkspaceId) -> Result<i64> {
    dispatch!(conn, webhooks::count(workspace))
}

/// A workspace's webhooks, oldest first (ties by id), after the row whose
/// (created_at, id) is `after`, at most `limit`.
pub fn list(
    conn: &Conn<'_>,
    workspace: WorkspaceId,
    after: Option<(Timestamp, WebhookId)>,
    limit: usize,
) -> Result<Vec<Webhook>> {
    dispatch!(conn, webhooks::list(workspace, after, limit))
}

pub fn get(conn: &Conn<'_>, id: WebhookId) -> Result<Option<Webhook>> {
    dispatch!(conn, webhooks::get(id))
}

/// Deletes the webhook and its deliveries; `false` when it was gone.
pub fn delete(conn: &Conn<'_>, id: WebhookId) -> Result<bool> {
    dispatch!(conn, webhooks::delete(id))
}

/// A webhook's deliveries, newest event first, before event `before`
/// (exclusive), at most `limit`.
pub fn deliveries(
    conn: &Conn<'_>,
    id: WebhookId,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Delivery>> {
    dispatch!(conn, webhooks::deliveries(id, before, limit))
}

/// Whether any delivery is due at `now` (a read of one index entry): the
/// sender takes a write only then.
pub fn any_due(conn: &Conn<'_>, now: Timestamp) -> Result<bool> {
    dispatch!(conn, webhooks::any_due(now))
}

/// Up to `limit` pending deliveries due at `now`, each the oldest pending
/// one of its webhook and order key (so a runtime's events arrive in the
/// order they happened), leased until `lease_until`: no other sender takes
/// them meanwhile, and one that dies leaves them due again then.
pub fn take_due(
    conn: &Conn<'_>,
    now: Timestamp,
    lease_until: Timestamp,
    limit: i64,
) -> Result<Vec<Due>> {
    dispatch!(conn, webhooks::take_due(now, lease_until, limit))
}

/// What became of one attempt at a delivery: it is appended to the
/// delivery's list; `next` is when to try again (`None`: it is final,
/// `delivered` tells how).
pub fn record(
    conn: &Conn<'_>,
    webhook: WebhookId,
    seq: i64,
    attempt: &Attempt,
    delivered: bool,
    next: Option<Timestamp>,
) -> Result<()> {
    dispatch!(
        conn,
        webhooks::record(webhook, seq, attempt, delivered, next)
    )
}

/// Most events (and their deliveries) deleted by one call of [`prune`] or
/// [`cap`]: the sender calls again while a call deletes this many.
pub const PRUNE_BATCH: i64 = 1000;

/// Most events the outbox keeps per workspace, whatever became of them:
/// an endpoint that stays down for days behind a flapping runtime cannot
/// grow it without end.
pub const MAX_EVENTS_PER_WORKSPACE: i64 = 10_000;

/// Deletes up to [`PRUNE_BATCH`] of the events older than `before`, with
/// their deliveries, whatever became of them: the outbox keeps a bounded
/// history.
pub fn prune(conn: &Conn<'_>, before: Timestamp) -> Result<usize> {
    dispatch!(conn, webhooks::prune(before))
}

/// Deletes up to [`PRUNE_BATCH`] of the events of workspaces that hold
/// more than `keep`, oldest first, with their deliveries.
pub fn cap(conn: &Conn<'_>, keep: i64) -> Result<usize> {
    dispatch!(conn, webhooks::cap(keep))
}
