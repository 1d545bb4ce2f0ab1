//! Price overrides; `effective_from` is a `date`.

use chrono::NaiveDate;
use postgres::Row;

use super::Client;

use crate::domain::{Timestamp, UserId, WorkspaceId};
use crate::pricing::{Price, PriceRow, PriceSource};

fn from_row(r: &Row) -> Result<PriceRow, postgres::Error> {
    Ok(PriceRow {
        provider: r.try_get(0)?,
        model: r.try_get(1)?,
        effective_from: r.try_get(2)?,
        price: Price {
            input: r.try_get(3)?,
            output: r.try_get(4)?,
            cache_read: r.try_get(5)?,
            cache_write: r.try_get(6)?,
        },
        source: PriceSource::Override,
    })
}

pub fn overrides(
    conn: &mut Client,
    workspace: WorkspaceId,
) -> Result<Vec<PriceRow>, postgres::Error> {
    conn.query(
        "SELECT provider, model, effective_from, input_micro_usd, output_micro_usd,
                cache_read_micro_usd, cache_write_micro_usd
         FROM pricing_override WHERE workspace_id = $1
         ORDER BY provider, model, effective_from",
        &[&workspace],
    )?
    .iter()
    .map(from_row)
    .collect()
}

/// `xmax = 0` on the returned row: it was inserted, not updated.
pub fn put(
    conn: &mut Client,
    workspace: WorkspaceId,
    row: &PriceRow,
    by: UserId,
    at: Timestamp,
) -> Result<bool, postgres::Error> {
    conn.query_one(
        "INSERT INTO pricing_override (workspace_id, provider, model, effective_from,
             input_micro_usd, output_micro_usd, cache_read_micro_usd, cache_write_micro_usd,
             created_by, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (workspace_id, provider, model, effective_from) DO UPDATE SET
             input_micro_usd = excluded.input_micro_usd,
             output_micro_usd = excluded.output_micro_usd,
             cache_read_micro_usd = excluded.cache_read_micro_usd,
             cache_write_micro_usd = excluded.cache_write_micro_usd,
             created_by = excluded.created_by,
             updated_at = excluded.updated_at
         RETURNING xmax = 0",
        &[
            &workspace,
            &row.provider,
            &row.model,
            &row.effective_from,
            &row.price.input,
            &row.price.output,
            &row.price.cache_read,
            &row.price.cache_write,
            &by,
            &at,
        ],
    )?
    .try_get(0)
}

pub fn delete(
    conn: &mut Client,
    workspace: WorkspaceId,
    provider: &str,
    model: &str,
    effective_from: NaiveDate,
) -> Result<bool, postgres::Error> {
    let n = conn.execute(
        "DELETE FROM pricing_override WHERE workspace_id = $1 AND provider = $2
             AND model = $3 AND effective_from = $4",
        &[&workspace, &provider, &model, &effective_from],
    )?;
    Ok(n > 0)
}
