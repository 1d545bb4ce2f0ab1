//! Price overrides; `effective_from` is `YYYY-MM-DD` text.

use chrono::NaiveDate;
use rusqlite::{params, Connection, Row};

use crate::domain::{Timestamp, UserId, WorkspaceId};
use crate::pricing::{Price, PriceRow, PriceSource};

fn from_row(r: &Row<'_>) -> rusqlite::Result<PriceRow> {
    let from: String = r.get(2)?;
    let effective_from = NaiveDate::parse_from_str(&from, "%Y-%m-%d").map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(PriceRow {
        provider: r.get(0)?,
        model: r.get(1)?,
        effective_from,
        price: Price {
            input: r.get(3)?,
            output: r.get(4)?,
            cache_read: r.get(5)?,
            cache_write: r.get(6)?,
        },
        source: PriceSource::Override,
    })
}

pub fn overrides(conn: &Connection, workspace: WorkspaceId) -> rusqlite::Result<Vec<PriceRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT provider, model, effective_from, input_micro_usd, output_micro_usd,
                cache_read_micro_usd, cache_write_micro_usd
         FROM pricing_override WHERE workspace_id = ?1
         ORDER BY provider, model, effective_from",
    )?;
    let rows = stmt.query_map([workspace], from_row)?;
    rows.collect()
}

pub fn put(
    conn: &Connection,
    workspace: WorkspaceId,
    row: &PriceRow,
    by: UserId,
    at: Timestamp,
) -> rusqlite::Result<bool> {
    let existed: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM pricing_override WHERE workspace_id = ?1
                 AND provider = ?2 AND model = ?3 AND effective_from = ?4)",
        )?
        .query_row(
            params![
                workspace,
                row.provider,
                row.model,
                row.effective_from.to_string()
            ],
            |r| r.get(0),
        )?;
    conn.prepare_cached(
        "INSERT INTO pricing_override (workspace_id, provider, model, effective_from,
             input_micro_usd, output_micro_usd, cache_read_micro_usd, cache_write_micro_usd,
             created_by, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (workspace_id, provider, model, effective_from) DO UPDATE SET
             input_micro_usd = excluded.input_micro_usd,
             output_micro_usd = excluded.output_micro_usd,
             cache_read_micro_usd = excluded.cache_read_micro_usd,
             cache_write_micro_usd = excluded.cache_write_micro_usd,
             created_by = excluded.created_by,
             updated_at = excluded.updated_at",
    )?
    .execute(params![
        workspace,
        row.provider,
        row.model,
        row.effective_from.to_string(),
        row.price.input,
        row.price.output,
        row.price.cache_read,
        row.price.cache_write,
        by,
        at
    ])?;
    Ok(!existed)
}

pub fn delete(
    conn: &Connection,
    workspace: WorkspaceId,
    provider: &str,
    model: &str,
    effective_from: NaiveDate,
) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached(
            "DELETE FROM pricing_override WHERE workspace_id = ?1 AND provider = ?2
                 AND model = ?3 AND effective_from = ?4",
        )?
        .execute(params![
            workspace,
            provider,
            model,
            effective_from.to_string()
        ])?;
    Ok(n > 0)
}
