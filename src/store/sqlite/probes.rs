//! Pings and update requests (see `store::probes` for the rules). The one
//! writer makes each write's counts and changes one step: no locks needed.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::{ProbeId, ProbeKind, RuntimeId, Timestamp};
use crate::store::probes::{Cutoffs, Probe};

const COLUMNS: &str = "id, runtime_id, kind, status, target_version, output, error, \
                       duration_ms, created_at, updated_at";

/// A probe ended, or timed out at the cutoffs' moment (`?1` ping, `?2`
/// update).
const ENDED: &str = "(status IN ('completed', 'failed')
                      OR (kind = 'ping' AND created_at < ?1)
                      OR (kind = 'update' AND created_at < ?2))";

fn probe(row: &Row<'_>) -> rusqlite::Result<Probe> {
    Ok(Probe {
        id: row.get(0)?,
        runtime_id: row.get(1)?,
        kind: row.get(2)?,
        status: row.get(3)?,
        target_version: row.get(4)?,
        output: row.get(5)?,
        error: row.get(6)?,
        duration_ms: row.get(7)?,
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
    })
}

pub fn lock_for_create(_conn: &Connection, _runtime: RuntimeId) -> rusqlite::Result<()> {
    // the writer runs one write at a time
    Ok(())
}

pub fn count_open(
    conn: &Connection,
    runtime: RuntimeId,
    kind: ProbeKind,
    open_since: Timestamp,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT count(*) FROM runtime_probe
         WHERE runtime_id = ?1 AND kind = ?2 AND status IN ('pending', 'running')
           AND created_at >= ?3",
    )?
    .query_row(params![runtime, kind, open_since], |r| r.get(0))
}

pub fn count_kept(conn: &Connection, runtime: RuntimeId, kind: ProbeKind) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM runtime_probe WHERE runtime_id = ?1 AND kind = ?2")?
        .query_row(params![runtime, kind], |r| r.get(0))
}

pub fn count_all(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM runtime_probe")?
        .query_row([], |r| r.get(0))
}

pub fn forget_finished_of(
    conn: &Connection,
    runtime: RuntimeId,
    kind: ProbeKind,
    cutoffs: Cutoffs,
    n: i64,
) -> rusqlite::Result<i64> {
    let sql = format!(
        "DELETE FROM runtime_probe WHERE rowid IN (
             SELECT rowid FROM runtime_probe
             WHERE runtime_id = ?3 AND kind = ?4 AND {ENDED}
             ORDER BY created_at, rowid LIMIT ?5)"
    );
    let deleted = conn.prepare_cached(&sql)?.execute(params![
        cutoffs.ping,
        cutoffs.update,
        runtime,
        kind,
        n
    ])?;
    Ok(deleted as i64)
}

pub fn forget_finished(conn: &Connection, cutoffs: Cutoffs, n: i64) -> rusqlite::Result<i64> {
    let sql = format!(
        "DELETE FROM runtime_probe WHERE rowid IN (
             SELECT rowid FROM runtime_probe WHERE {ENDED}
             ORDER BY created_at, rowid LIMIT ?3)"
    );
    let deleted = conn
        .prepare_cached(&sql)?
        .execute(params![cutoffs.ping, cutoffs.update, n])?;
    Ok(deleted as i64)
}

pub fn insert(conn: &Connection, p: &Probe) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO runtime_probe ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))?
    .execute(params![
        p.id,
        p.runtime_id,
        p.kind,
        p.status,
        p.target_version,
        p.output,
        p.error,
        p.duration_ms,
        p.created_at,
        p.updated_at
    ])?;
    Ok(())
}

pub fn get(conn: &Connection, id: ProbeId, _lock: bool) -> rusqlite::Result<Option<Probe>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM runtime_probe WHERE id = ?1"
    ))?
    .query_row([id], probe)
    .optional()
}

pub fn pending_kinds(
    conn: &Connection,
    runtime: RuntimeId,
    cutoffs: Cutoffs,
) -> rusqlite::Result<Vec<ProbeKind>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT kind FROM runtime_probe
         WHERE runtime_id = ?1 AND status = 'pending'
           AND ((kind = 'ping' AND created_at >= ?2) OR (kind = 'update' AND created_at >= ?3))",
    )?;
    let kinds = stmt.query_map(params![runtime, cutoffs.ping, cutoffs.update], |r| r.get(0))?;
    kinds.collect()
}

pub fn take_pending(
    conn: &Connection,
    runtime: RuntimeId,
    kind: ProbeKind,
    open_since: Timestamp,
    now: Timestamp,
) -> rusqlite::Result<Option<Probe>> {
    conn.prepare_cached(&format!(
        "UPDATE runtime_probe SET status = 'running', updated_at = ?4
         WHERE rowid = (SELECT rowid FROM runtime_probe
                        WHERE runtime_id = ?1 AND kind = ?2 AND status = 'pending'
                          AND created_at >= ?3
                        ORDER BY created_at, rowid LIMIT 1)
         RETURNING {COLUMNS}"
    ))?
    .query_row(params![runtime, kind, open_since, now], probe)
    .optional()
}

pub fn update(conn: &Connection, p: &Probe) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE runtime_probe
         SET status = ?2, output = ?3, error = ?4, duration_ms = ?5, updated_at = ?6
         WHERE id = ?1",
    )?
    .execute(params![
        p.id,
        p.status,
        p.output,
        p.error,
        p.duration_ms,
        p.updated_at
    ])?;
    Ok(())
}

pub fn forget_old(
    conn: &Connection,
    ended_before: Timestamp,
    cutoffs: Cutoffs,
    batch: i64,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "DELETE FROM runtime_probe WHERE rowid IN (
             SELECT rowid FROM runtime_probe
             WHERE (status IN ('completed', 'failed') AND updated_at < ?3)
                OR (status IN ('pending', 'running')
                    AND ((kind = 'ping' AND created_at < ?1)
                         OR (kind = 'update' AND created_at < ?2)))
             LIMIT ?4)",
    )?
    .execute(params![cutoffs.ping, cutoffs.update, ended_before, batch])
}
