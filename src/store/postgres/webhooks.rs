//! `webhook` rows and the outbox's deliveries.

use postgres::Row;

use super::Client;
use crate::domain::{Timestamp, UserId, WebhookId, WorkspaceId};
use crate::store::webhooks::*;

const COLUMNS: &str = "id, workspace_id, url, events, secret, created_by, created_at";

fn from_row(row: &Row) -> Result<Webhook, postgres::Error> {
    Ok(Webhook {
        id: row.try_get(0)?,
        workspace_id: row.try_get(1)?,
        url: row.try_get(2)?,
        // written by this module only, as a list of strings
        events: serde_json::from_value(row.try_get(3)?).unwrap_or_default(),
        secret: row.try_get(4)?,
        created_by: row.try_get(5)?,
        created_at: row.try_get(6)?,
    })
}

pub fn create(
    conn: &mut Client,
    workspace: WorkspaceId,
    url: &str,
    events: &[String],
    secret: &str,
    by: UserId,
    now: Timestamp,
) -> Result<Webhook, postgres::Error> {
    let row = conn.query_one(
        &format!(
            "INSERT INTO webhook (id, workspace_id, url, events, secret, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING {COLUMNS}"
        ),
        &[
            &WebhookId::new(),
            &workspace,
            &url,
            &serde_json::json!(events),
            &secret,
            &by,
            &now,
        ],
    )?;
    from_row(&row)
}

pub fn count(conn: &mut Client, workspace: WorkspaceId) -> Result<i64, postgres::Error> {
    conn.query_one(
        "SELECT count(*) FROM webhook WHERE workspace_id = $1",
        &[&workspace],
    )?
    .try_get(0)
}

pub fn list(
    conn: &mut Client,
    workspace: WorkspaceId,
    after: Option<(Timestamp, WebhookId)>,
    limit: usize,
) -> Result<Vec<Webhook>, postgres::Error> {
    let limit = limit as i64;
    let rows = match after {
        None => conn.query(
            &format!(
                "SELECT {COLUMNS} FROM webhook WHERE workspace_id = $1
                 ORDER BY created_at, id LIMIT $2"
            ),
            &[&workspace, &limit],
        )?,
        Some((created_at, id)) => conn.query(
            &format!(
                "SELECT {COLUMNS} FROM webhook
                 WHERE workspace_id = $1 AND (created_at, id) > ($2, $3)
                 ORDER BY created_at, id LIMIT $4"
            ),
            &[&workspace, &created_at, &id, &limit],
        )?,
    };
    rows.iter().map(from_row).collect()
}

pub fn get(conn: &mut Client, id: WebhookId) -> Result<Option<Webhook>, postgres::Error> {
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM webhook WHERE id = $1"),
        &[&id],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub fn delete(conn: &mut Client, id: WebhookId) -> Result<bool, postgres::Error> {
    Ok(conn.execute("DELETE FROM webhook WHERE id = $1", &[&id])? > 0)
}

pub fn deliveries(
    conn: &mut Client,
    id: WebhookId,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Delivery>, postgres::Error> {
    let rows = conn.query(
        "SELECT d.event_seq, e.id::text, e.type, e.created_at, d.status, d.attempts,
                d.next_attempt_at
         FROM webhook_delivery d JOIN webhook_event e ON e.seq = d.event_seq
         WHERE d.webhook_id = $1 AND d.event_seq < $2
         ORDER BY d.event_seq DESC
         LIMIT $3",
        &[&id, &before.unwrap_or(i64::MAX), &limit],
    )?;
    rows.iter()
        .map(|r| {
            let status: String = r.try_get(4)?;
            let attempts: serde_json::Value = r.try_get(5)?;
            let next: Timestamp = r.try_get(6)?;
            Ok(Delivery {
                seq: r.try_get(0)?,
                event_id: r.try_get(1)?,
                event: r.try_get(2)?,
                event_created_at: r.try_get(3)?,
                next_attempt_at: (status == "pending").then_some(next),
                status,
                // written by this module only; an unreadable list shows empty
                attempts: serde_json::from_value(attempts).unwrap_or_default(),
            })
        })
        .collect()
}

pub fn any_due(conn: &mut Client, now: Timestamp) -> Result<bool, postgres::Error> {
    conn.query_one(
        "SELECT EXISTS (SELECT 1 FROM webhook_delivery
                        WHERE status = 'pending' AND next_attempt_at <= $1)",
        &[&now],
    )?
    .try_get(0)
}

/// The lease is taken with `FOR UPDATE SKIP LOCKED`: two nodes sending at
/// once take different deliveries.
pub fn take_due(
    conn: &mut Client,
    now: Timestamp,
    lease_until: Timestamp,
    limit: i64,
) -> Result<Vec<Due>, postgres::Error> {
    let rows = conn.query(
        "WITH due AS (
             SELECT d.webhook_id, d.event_seq FROM webhook_delivery d
             WHERE d.status = 'pending' AND d.next_attempt_at <= $1
               AND NOT EXISTS (SELECT 1 FROM webhook_delivery earlier
                   WHERE earlier.webhook_id = d.webhook_id AND earlier.order_key = d.order_key
                     AND earlier.status = 'pending' AND earlier.event_seq < d.event_seq)
             ORDER BY d.event_seq
             LIMIT $3
             FOR UPDATE OF d SKIP LOCKED),
         leased AS (
             UPDATE webhook_delivery d SET next_attempt_at = $2
             FROM due WHERE d.webhook_id = due.webhook_id AND d.event_seq = due.event_seq
             RETURNING d.webhook_id, d.event_seq, jsonb_array_length(d.attempts) AS attempts)
         SELECT l.webhook_id, l.event_seq, l.attempts, w.url, w.secret, e.id::text, e.type,
                e.workspace_id, e.payload, e.created_at
         FROM leased l
         JOIN webhook w ON w.id = l.webhook_id
         JOIN webhook_event e ON e.seq = l.event_seq
         ORDER BY l.event_seq",
        &[&now, &lease_until, &limit],
    )?;
    rows.iter()
        .map(|r| {
            let attempts: i32 = r.try_get(2)?;
            Ok(Due {
                webhook_id: r.try_get(0)?,
                seq: r.try_get(1)?,
                attempts: usize::try_from(attempts).unwrap_or(0),
                url: r.try_get(3)?,
                secret: r.try_get(4)?,
                event_id: r.try_get(5)?,
                event: r.try_get(6)?,
                workspace_id: r.try_get(7)?,
                payload: r.try_get(8)?,
                created_at: r.try_get(9)?,
            })
        })
        .collect()
}

pub fn record(
    conn: &mut Client,
    webhook: WebhookId,
    seq: i64,
    attempt: &Attempt,
    delivered: bool,
    next: Option<Timestamp>,
) -> Result<(), postgres::Error> {
    let attempt = serde_json::to_value(attempt).unwrap_or(serde_json::Value::Null);
    let status = match (delivered, next) {
        (true, _) => "delivered",
        (false, Some(_)) => "pending",
        (false, None) => "failed",
    };
    conn.execute(
        "UPDATE webhook_delivery
         SET attempts = CASE WHEN jsonb_array_length(attempts) < $6
                             THEN attempts || jsonb_build_array($3::jsonb) ELSE attempts END,
             status = $4, next_attempt_at = coalesce($5, next_attempt_at)
         WHERE webhook_id = $1 AND event_seq = $2 AND status = 'pending'",
        &[
            &webhook,
            &seq,
            &attempt,
            &status,
            &next,
            &(MAX_ATTEMPTS_KEPT as i32),
        ],
    )?;
    Ok(())
}

pub fn prune(conn: &mut Client, before: Timestamp) -> Result<usize, postgres::Error> {
    let n = conn.execute(
        "DELETE FROM webhook_event WHERE seq IN
             (SELECT seq FROM webhook_event WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
        &[&before, &PRUNE_BATCH],
    )?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

pub fn cap(conn: &mut Client, keep: i64) -> Result<usize, postgres::Error> {
    let n = conn.execute(
        "DELETE FROM webhook_event WHERE seq IN (
             SELECT e.seq FROM webhook_event e
             JOIN (SELECT w.workspace_id,
                          (SELECT x.seq FROM webhook_event x WHERE x.workspace_id = w.workspace_id
                           ORDER BY x.seq DESC LIMIT 1 OFFSET $1) AS floor
                   FROM (SELECT DISTINCT workspace_id FROM webhook_event) w) f
               ON f.workspace_id = e.workspace_id
             WHERE e.seq <= f.floor
             LIMIT $2)",
        &[&keep, &PRUNE_BATCH],
    )?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}
