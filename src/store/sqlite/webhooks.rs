//! `webhook` rows and the outbox's deliveries.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::stored_time;
use crate::domain::{Timestamp, UserId, WebhookId, WorkspaceId};
use crate::store::webhooks::*;

const COLUMNS: &str = "id, workspace_id, url, events, secret, created_by, created_at";

fn conversion(idx: usize, e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Webhook> {
    let events: String = row.get(3)?;
    Ok(Webhook {
        id: row.get(0)?,
        workspace_id: row.get(1)?,
        url: row.get(2)?,
        events: serde_json::from_str(&events).map_err(|e| conversion(3, e))?,
        secret: row.get(4)?,
        created_by: row.get(5)?,
        created_at: row.get(6)?,
    })
}

pub fn create(
    conn: &Connection,
    workspace: WorkspaceId,
    url: &str,
    events: &[String],
    secret: &str,
    by: UserId,
    now: Timestamp,
) -> rusqlite::Result<Webhook> {
    let events = serde_json::to_string(events)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.prepare_cached(&format!(
        "INSERT INTO webhook (id, workspace_id, url, events, secret, created_by, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         RETURNING {COLUMNS}"
    ))?
    .query_row(
        params![WebhookId::new(), workspace, url, events, secret, by, now],
        from_row,
    )
}

pub fn count(conn: &Connection, workspace: WorkspaceId) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM webhook WHERE workspace_id = ?1")?
        .query_row([workspace], |r| r.get(0))
}

pub fn list(
    conn: &Connection,
    workspace: WorkspaceId,
    after: Option<(Timestamp, WebhookId)>,
    limit: usize,
) -> rusqlite::Result<Vec<Webhook>> {
    // '' sorts before every stored timestamp and id: the first page
    let (created_at, id) = after.map_or((String::new(), String::new()), |(c, id)| {
        (stored_time(c), id.to_string())
    });
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhook
         WHERE workspace_id = ?1 AND (created_at, id) > (?2, ?3)
         ORDER BY created_at, id
         LIMIT ?4"
    ))?;
    let rows = stmt.query_map(params![workspace, created_at, id, limit as i64], from_row)?;
    rows.collect()
}

pub fn get(conn: &Connection, id: WebhookId) -> rusqlite::Result<Option<Webhook>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM webhook WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()
}

pub fn delete(conn: &Connection, id: WebhookId) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM webhook WHERE id = ?1")?
        .execute([id])?
        > 0)
}

pub fn deliveries(
    conn: &Connection,
    id: WebhookId,
    before: Option<i64>,
    limit: i64,
) -> rusqlite::Result<Vec<Delivery>> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.event_seq, e.id, e.type, e.created_at, d.status, d.attempts, d.next_attempt_at
         FROM webhook_delivery d JOIN webhook_event e ON e.seq = d.event_seq
         WHERE d.webhook_id = ?1 AND d.event_seq < ?2
         ORDER BY d.event_seq DESC
         LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![id, before.unwrap_or(i64::MAX), limit], |r| {
        let attempts: String = r.get(5)?;
        let status: String = r.get(4)?;
        let next: Timestamp = r.get(6)?;
        Ok(Delivery {
            seq: r.get(0)?,
            event_id: r.get(1)?,
            event: r.get(2)?,
            event_created_at: r.get(3)?,
            next_attempt_at: (status == "pending").then_some(next),
            status,
            attempts: serde_json::from_str(&attempts).map_err(|e| conversion(5, e))?,
        })
    })?;
    rows.collect()
}

pub fn any_due(conn: &Connection, now: Timestamp) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM webhook_delivery
                        WHERE status = 'pending' AND next_attempt_at <= ?1)",
    )?
    .query_row([now], |r| r.get(0))
}

pub fn take_due(
    conn: &Connection,
    now: Timestamp,
    lease_until: Timestamp,
    limit: i64,
) -> rusqlite::Result<Vec<Due>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE webhook_delivery SET next_attempt_at = ?2
         WHERE (webhook_id, event_seq) IN (
             SELECT d.webhook_id, d.event_seq FROM webhook_delivery d
             WHERE d.status = 'pending' AND d.next_attempt_at <= ?1
               AND NOT EXISTS (SELECT 1 FROM webhook_delivery before
                   WHERE before.webhook_id = d.webhook_id AND before.order_key = d.order_key
                     AND before.status = 'pending' AND before.event_seq < d.event_seq)
             ORDER BY d.event_seq
             LIMIT ?3)
         RETURNING webhook_id, event_seq, json_array_length(attempts)",
    )?;
    let leased: Vec<(WebhookId, i64, i64)> = stmt
        .query_map(params![now, lease_until, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut read = conn.prepare_cached(
        "SELECT w.url, w.secret, e.id, e.type, e.workspace_id, e.payload, e.created_at
         FROM webhook w, webhook_event e WHERE w.id = ?1 AND e.seq = ?2",
    )?;
    let mut due = Vec::with_capacity(leased.len());
    for (webhook_id, seq, attempts) in leased {
        let row = read
            .query_row(params![webhook_id, seq], |r| {
                let payload: String = r.get(5)?;
                Ok(Due {
                    webhook_id,
                    seq,
                    url: r.get(0)?,
                    secret: r.get(1)?,
                    event_id: r.get(2)?,
                    event: r.get(3)?,
                    workspace_id: r.get(4)?,
                    payload: serde_json::from_str(&payload).map_err(|e| conversion(5, e))?,
                    created_at: r.get(6)?,
                    attempts: usize::try_from(attempts).unwrap_or(0),
                })
            })
            .optional()?;
        due.extend(row);
    }
    due.sort_by_key(|d| d.seq);
    Ok(due)
}

pub fn record(
    conn: &Connection,
    webhook: WebhookId,
    seq: i64,
    attempt: &Attempt,
    delivered: bool,
    next: Option<Timestamp>,
) -> rusqlite::Result<()> {
    let attempt = serde_json::to_string(attempt)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let status = match (delivered, next) {
        (true, _) => "delivered",
        (false, Some(_)) => "pending",
        (false, None) => "failed",
    };
    conn.prepare_cached(
        "UPDATE webhook_delivery
         SET attempts = CASE WHEN json_array_length(attempts) < ?6
                             THEN json_insert(attempts, '$[#]', json(?3)) ELSE attempts END,
             status = ?4, next_attempt_at = coalesce(?5, next_attempt_at)
         WHERE webhook_id = ?1 AND event_seq = ?2 AND status = 'pending'",
    )?
    .execute(params![
        webhook,
        seq,
        attempt,
        status,
        next,
        MAX_ATTEMPTS_KEPT as i64
    ])?;
    Ok(())
}

pub fn prune(conn: &Connection, before: Timestamp) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "DELETE FROM webhook_event WHERE seq IN
             (SELECT seq FROM webhook_event WHERE created_at < ?1 ORDER BY created_at LIMIT ?2)",
    )?
    .execute(params![before, PRUNE_BATCH])
}

pub fn cap(conn: &Connection, keep: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "DELETE FROM webhook_event WHERE seq IN (
             SELECT e.seq FROM webhook_event e
             JOIN (SELECT w.workspace_id,
                          (SELECT x.seq FROM webhook_event x WHERE x.workspace_id = w.workspace_id
                           ORDER BY x.seq DESC LIMIT 1 OFFSET ?1) AS floor
                   FROM (SELECT DISTINCT workspace_id FROM webhook_event) w) f
               ON f.workspace_id = e.workspace_id
             WHERE e.seq <= f.floor
             LIMIT ?2)",
    )?
    .execute(params![keep, PRUNE_BATCH])
}
