//! Pings and update requests (see `store::probes` for the rules).
//!
//! Nodes queue, hand over and finish probes at once: a new probe's checks
//! run under a table lock (see [`lock_for_create`]), a heartbeat takes its
//! probe with `FOR UPDATE SKIP LOCKED`, and a result locks its row.

use postgres::Row;

use super::Client;

use crate::domain::{ProbeId, ProbeKind, RuntimeId, Timestamp};
use crate::store::probes::{Cutoffs, Probe};

const COLUMNS: &str = "id, runtime_id, kind, status, target_version, output, error, \
                       duration_ms, created_at, updated_at";

/// A probe ended, or timed out at the cutoffs' moment (`$1` ping, `$2`
/// update).
const ENDED: &str = "(status IN ('completed', 'failed')
                      OR (kind = 'ping' AND created_at < $1)
                      OR (kind = 'update' AND created_at < $2))";

fn probe(row: &Row) -> Result<Probe, postgres::Error> {
    Ok(Probe {
        id: row.try_get(0)?,
        runtime_id: row.try_get(1)?,
        kind: row.try_get(2)?,
        status: row.try_get(3)?,
        target_version: row.try_get(4)?,
        output: row.try_get(5)?,
        error: row.try_get(6)?,
        duration_ms: row.try_get(7)?,
        created_at: row.try_get(8)?,
        updated_at: row.try_get(9)?,
    })
}

/// Makes the bounds a new probe checks exact across nodes: the table's
/// SHARE ROW EXCLUSIVE lock admits no other creation and no other change
/// to probes until this transaction ends (probes are queued by people, a
/// few a minute). The runtime's row is locked first, as the schema's
/// cascades lock it (runtime, then its probes), so a runtime deleted at
/// the same moment waits or is waited for, never deadlocks.
pub fn lock_for_create(conn: &mut Client, runtime: RuntimeId) -> Result<(), postgres::Error> {
    conn.execute(
        "SELECT 1 FROM agent_runtime WHERE id = $1 FOR KEY SHARE",
        &[&runtime],
    )?;
    conn.batch_execute("LOCK TABLE runtime_probe IN SHARE ROW EXCLUSIVE MODE")
}

pub fn count_open(
    conn: &mut Client,
    runtime: RuntimeId,
    kind: ProbeKind,
    open_since: Timestamp,
) -> Result<i64, postgres::Error> {
    conn.query_one(
        "SELECT count(*) FROM runtime_probe
         WHERE runtime_id = $1 AND kind = $2 AND status IN ('pending', 'running')
           AND created_at >= $3",
        &[&runtime, &kind, &open_since],
    )?
    .try_get(0)
}

pub fn count_kept(
    conn: &mut Client,
    runtime: RuntimeId,
    kind: ProbeKind,
) -> Result<i64, postgres::Error> {
    conn.query_one(
        "SELECT count(*) FROM runtime_probe WHERE runtime_id = $1 AND kind = $2",
        &[&runtime, &kind],
    )?
    .try_get(0)
}

pub fn count_all(conn: &mut Client) -> Result<i64, postgres::Error> {
    conn.query_one("SELECT count(*) FROM runtime_probe", &[])?
        .try_get(0)
}

pub fn forget_finished_of(
    conn: &mut Client,
    runtime: RuntimeId,
    kind: ProbeKind,
    cutoffs: Cutoffs,
    n: i64,
) -> Result<i64, postgres::Error> {
    let sql = format!(
        "DELETE FROM runtime_probe WHERE id IN (
             SELECT id FROM runtime_probe
             WHERE runtime_id = $3 AND kind = $4 AND {ENDED}
             ORDER BY created_at, seq LIMIT $5)"
    );
    let deleted = conn.execute(&sql, &[&cutoffs.ping, &cutoffs.update, &runtime, &kind, &n])?;
    Ok(deleted as i64)
}

pub fn forget_finished(
    conn: &mut Client,
    cutoffs: Cutoffs,
    n: i64,
) -> Result<i64, postgres::Error> {
    let sql = format!(
        "DELETE FROM runtime_probe WHERE id IN (
             SELECT id FROM runtime_probe WHERE {ENDED}
             ORDER BY created_at, seq LIMIT $3)"
    );
    let deleted = conn.execute(&sql, &[&cutoffs.ping, &cutoffs.update, &n])?;
    Ok(deleted as i64)
}

pub fn insert(conn: &mut Client, p: &Probe) -> Result<(), postgres::Error> {
    conn.execute(
        &format!(
            "INSERT INTO runtime_probe ({COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ),
        &[
            &p.id,
            &p.runtime_id,
            &p.kind,
            &p.status,
            &p.target_version,
            &p.output,
            &p.error,
            &p.duration_ms,
            &p.created_at,
            &p.updated_at,
        ],
    )?;
    Ok(())
}

/// With `lock` (inside a write), `FOR UPDATE`: of two results at once, the
/// second sees what the first wrote.
pub fn get(conn: &mut Client, id: ProbeId, lock: bool) -> Result<Option<Probe>, postgres::Error> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM runtime_probe WHERE id = $1{lock}"),
        &[&id],
    )?
    .as_ref()
    .map(probe)
    .transpose()
}

pub fn pending_kinds(
    conn: &mut Client,
    runtime: RuntimeId,
    cutoffs: Cutoffs,
) -> Result<Vec<ProbeKind>, postgres::Error> {
    conn.query(
        "SELECT DISTINCT kind FROM runtime_probe
         WHERE runtime_id = $1 AND status = 'pending'
           AND ((kind = 'ping' AND created_at >= $2) OR (kind = 'update' AND created_at >= $3))",
        &[&runtime, &cutoffs.ping, &cutoffs.update],
    )?
    .iter()
    .map(|r| r.try_get(0))
    .collect()
}

/// Two heartbeats of one runtime at once (on two nodes) take two different
/// probes, or one takes it and the other none: the row is picked `FOR
/// UPDATE SKIP LOCKED` and re-checked as it is changed.
pub fn take_pending(
    conn: &mut Client,
    runtime: RuntimeId,
    kind: ProbeKind,
    open_since: Timestamp,
    now: Timestamp,
) -> Result<Option<Probe>, postgres::Error> {
    conn.query_opt(
        &format!(
            "UPDATE runtime_probe SET status = 'running', updated_at = $4
             WHERE id = (SELECT id FROM runtime_probe
                         WHERE runtime_id = $1 AND kind = $2 AND status = 'pending'
                           AND created_at >= $3
                         ORDER BY created_at, seq LIMIT 1
                         FOR UPDATE SKIP LOCKED)
               AND status = 'pending'
             RETURNING {COLUMNS}"
        ),
        &[&runtime, &kind, &open_since, &now],
    )?
    .as_ref()
    .map(probe)
    .transpose()
}

pub fn update(conn: &mut Client, p: &Probe) -> Result<(), postgres::Error> {
    conn.execute(
        "UPDATE runtime_probe
         SET status = $2, output = $3, error = $4, duration_ms = $5, updated_at = $6
         WHERE id = $1",
        &[
            &p.id,
            &p.status,
            &p.output,
            &p.error,
            &p.duration_ms,
            &p.updated_at,
        ],
    )?;
    Ok(())
}

pub fn forget_old(
    conn: &mut Client,
    ended_before: Timestamp,
    cutoffs: Cutoffs,
    batch: i64,
) -> Result<usize, postgres::Error> {
    let deleted = conn.execute(
        "DELETE FROM runtime_probe WHERE id IN (
             SELECT id FROM runtime_probe
             WHERE (status IN ('completed', 'failed') AND updated_at < $3)
                OR (status IN ('pending', 'running')
                    AND ((kind = 'ping' AND created_at < $1)
                         OR (kind = 'update' AND created_at < $2)))
             LIMIT $4)",
        &[&cutoffs.ping, &cutoffs.update, &ended_before, &batch],
    )?;
    Ok(deleted as usize)
}
