//! `copy-data` on PostgreSQL: reading a database as one snapshot
//! (`REPEATABLE READ READ ONLY`) and writing an empty one in one
//! transaction with binary `COPY … FROM STDIN`. Connections are made from
//! the same settings as the engine's (the URL's options, such as a
//! `search_path`, then `TimeZone=UTC`).

use std::collections::BTreeSet;

use bytes::BufMut;
use chrono::{DateTime, NaiveDate, Utc};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{Client, NoTls, Row};
use uuid::Uuid;

use crate::config::DatabaseConfig;
use crate::store::copy::{
    add_totals, bad_value, Cell, Database, Destination, Failed, Kind, Source, Step, Table,
    TableWriter, Totals, TABLES,
};

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// Runs `f` where the synchronous driver may block (see `off_executor`).
pub(in crate::store) fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    super::off_executor(f)
}

/// One side of a copy: the connection, inside its transaction.
struct Side {
    client: Client,
    failed: fn(String) -> Failed,
}

/// What the driver said, with the server's detail when there is one.
fn detail(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(more) => format!("{}: {more}", db.message()),
            None => db.message().to_string(),
        },
        None => e.to_string(),
    }
}

fn connect(config: &DatabaseConfig, url: &str) -> Result<Client, String> {
    super::client_config(config, url)
        .map_err(|e| e.to_string())?
        .connect(NoTls)
        .map_err(|e| format!("cannot connect: {}", detail(&e)))
}

/// The database at `url`, read as one snapshot from here on.
pub(in crate::store) fn source(
    config: &DatabaseConfig,
    url: &str,
) -> Result<Box<dyn Source>, String> {
    let mut client = connect(config, url)?;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .map_err(|e| detail(&e))?;
    let found: Option<i64> = client
        .query_one(
            "SELECT max(version)::bigint FROM refinery_schema_history",
            &[],
        )
        .and_then(|row| row.try_get(0))
        .map_err(|e| format!("it is not an agenthub database ({})", detail(&e)))?;
    let known = super::embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max();
    match (found, known) {
        (Some(found), Some(known)) if found < known => {
            return Err(format!(
                "its schema is at migration V{found}, this agenthub's at V{known}: run \
                 `agenthub migrate` on it first"
            ))
        }
        (Some(found), Some(known)) if found > known => {
            return Err(format!(
                "its schema (migration V{found}) is newer than this agenthub's (V{known})"
            ))
        }
        (None, _) => return Err("it is not an agenthub database (no migration applied)".into()),
        _ => {}
    }
    Ok(Box::new(Side {
        client,
        failed: Failed::Source,
    }))
}

/// The migrated database at `url`, in one transaction that holds its
/// tables against other writers until it ends.
pub(in crate::store) fn destination(
    config: &DatabaseConfig,
    url: &str,
) -> Result<Box<dyn Destination>, String> {
    let mut client = connect(config, url)?;
    let tables: Vec<String> = TABLES.iter().map(|t| t.quoted()).collect();
    client
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {} IN EXCLUSIVE MODE",
            tables.join(", ")
        ))
        .map_err(|e| format!("cannot lock its tables: {}", detail(&e)))?;
    Ok(Box::new(Side {
        client,
        failed: Failed::Destination,
    }))
}

impl Side {
    fn fail(&self, what: impl std::fmt::Display) -> Failed {
        (self.failed)(what.to_string())
    }

    fn names(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Step<BTreeSet<String>> {
        let rows = self.client.query(sql, params);
        let rows = rows.map_err(|e| self.fail(detail(&e)))?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(|e| self.fail(detail(&e))))
            .collect()
    }
}

impl Database for Side {
    fn tables(&mut self) -> Step<BTreeSet<String>> {
        self.names(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema()",
            &[],
        )
    }

    fn columns(&mut self, table: &Table) -> Step<BTreeSet<String>> {
        // a seq that numbers the rows stands in for SQLite's rowid: it is
        // not copied as a column (task_message's seq is data)
        let numbering = if table.seq { "seq" } else { "" };
        self.names(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 AND column_name <> $2",
            &[&table.name, &numbering],
        )
    }

    fn count(&mut self, table: &Table) -> Step<u64> {
        let sql = format!("SELECT count(*) FROM {}", table.quoted());
        let n: i64 = self
            .client
            .query_one(&sql, &[])
            .and_then(|row| row.try_get(0))
            .map_err(|e| self.fail(format!("counting {}: {}", table.name, detail(&e))))?;
        Ok(n.max(0) as u64)
    }

    fn add_totals(&mut self, totals: &mut Totals, offset: usize, sql: &str) -> Step<()> {
        // sums of bigint are numeric: as text, parsed wide
        let sql = format!("SELECT workspace_id, i::text, o::text, r::text, w::text FROM ({sql}) q");
        let rows = self.client.query(&sql, &[]);
        let rows = rows.map_err(|e| self.fail(detail(&e)))?;
        for row in rows {
            let id: Uuid = row.try_get(0).map_err(|e| self.fail(detail(&e)))?;
            let mut sums = [0i128; 4];
            for (i, sum) in sums.iter_mut().enumerate() {
                let text: String = row.try_get(i + 1).map_err(|e| self.fail(detail(&e)))?;
                *sum = text
                    .parse()
                    .map_err(|e| self.fail(format!("usage sum {text:?}: {e}")))?;
            }
            add_totals(totals, offset, id, sums);
        }
        Ok(())
    }
}

impl Source for Side {
    fn read(&mut self, table: &Table, each: &mut dyn FnMut(Vec<Cell>) -> Step<()>) -> Step<u64> {
        let sql = format!(
            "SELECT {} FROM {}{}",
            table.column_list(),
            table.quoted(),
            // the order SQLite's rowids must follow
            if table.seq { " ORDER BY seq" } else { "" }
        );
        let failed = self.failed;
        let reading =
            |e: postgres::Error| failed(format!("reading {}: {}", table.name, detail(&e)));
        let mut rows = self
            .client
            .query_raw(sql.as_str(), std::iter::empty::<&(dyn ToSql + Sync)>())
            .map_err(reading)?;
        let mut read = 0;
        while let Some(row) = rows.next().map_err(reading)? {
            let mut cells = Vec::with_capacity(table.columns.len());
            for (i, (column, kind)) in table.columns.iter().enumerate() {
                cells.push(cell(table, column, *kind, &row, i).map_err(failed)?);
            }
            each(cells)?;
            read += 1;
        }
        Ok(read)
    }
}

/// The value of column `i` (`column`) as PostgreSQL stores it.
fn cell(table: &Table, column: &str, kind: Kind, row: &Row, i: usize) -> Result<Cell, String> {
    let bad = |e: postgres::Error| bad_value(table, column, detail(&e));
    Ok(match kind {
        Kind::Id => row
            .try_get::<_, Option<Uuid>>(i)
            .map_err(bad)?
            .map_or(Cell::Null, Cell::Id),
        Kind::Text => row
            .try_get::<_, Option<String>>(i)
            .map_err(bad)?
            .map_or(Cell::Null, Cell::Text),
        Kind::Int => row
            .try_get::<_, Option<i64>>(i)
            .map_err(bad)?
            .map_or(Cell::Null, Cell::Int),
        Kind::Time => row
            .try_get::<_, Option<DateTime<Utc>>>(i)
            .map_err(bad)?
            .map_or(Cell::Null, Cell::Time),
        Kind::Quarter => row
            .try_get::<_, Option<DateTime<Utc>>>(i)
            .map_err(bad)?
            .map_or(Cell::Null, Cell::Quarter),
        Kind::Date => row
            .try_get::<_, Option<NaiveDate>>(i)
            .map_err(bad)?
            .map_or(Cell::Null, Cell::Date),
        // compact JSON text, as the SQLite engine writes it
        Kind::Json => row
            .try_get::<_, Option<serde_json::Value>>(i)
            .map_err(bad)?
            .map_or(Cell::Null, |v| Cell::Json(v.to_string())),
    })
}

/// The type COPY is told a column of `kind` has.
fn pg_type(kind: Kind) -> Type {
    match kind {
        Kind::Id => Type::UUID,
        Kind::Text => Type::TEXT,
        Kind::Int => Type::INT8,
        Kind::Time | Kind::Quarter => Type::TIMESTAMPTZ,
        Kind::Json => Type::JSONB,
        Kind::Date => Type::DATE,
    }
}

impl ToSql for Cell {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Cell::Null => Ok(IsNull::Yes),
            Cell::Id(id) => id.to_sql_checked(ty, out),
            Cell::Text(s) => s.to_sql_checked(ty, out),
            Cell::Int(n) => n.to_sql_checked(ty, out),
            Cell::Time(t) | Cell::Quarter(t) => t.to_sql_checked(ty, out),
            Cell::Date(d) => d.to_sql_checked(ty, out),
            // the text itself (jsonb's binary form is a version byte and
            // the text): the server checks it
            Cell::Json(text) => {
                if *ty == Type::JSONB {
                    out.put_u8(1);
                } else if *ty != Type::JSON {
                    return Err(format!("JSON text cannot go into a {ty} column").into());
                }
                out.put_slice(text.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    /// Each variant checks the column's type itself.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl Destination for Side {
    fn is_empty(&mut self, table: &Table) -> Step<bool> {
        let sql = format!("SELECT NOT EXISTS (SELECT 1 FROM {})", table.quoted());
        let empty = self.client.query_one(&sql, &[]).and_then(|r| r.try_get(0));
        empty.map_err(|e| self.fail(detail(&e)))
    }

    fn writer(&mut self, table: &'static Table) -> Step<Box<dyn TableWriter + '_>> {
        // seq is left to the identity: it numbers the rows in the order
        // they arrive, and stays past them for the server's inserts
        let sql = format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            table.quoted(),
            table.column_list()
        );
        let failed = self.failed;
        let types: Vec<Type> = table.columns.iter().map(|(_, k)| pg_type(*k)).collect();
        let copy = self
            .client
            .copy_in(sql.as_str())
            .map_err(|e| failed(format!("writing {}: {}", table.name, detail(&e))))?;
        Ok(Box::new(Copy {
            writer: BinaryCopyInWriter::new(copy, &types),
            table,
            failed,
        }))
    }

    fn set_runtime_counts(&mut self, counts: &[(Uuid, i64)]) -> Step<()> {
        let stmt = self
            .client
            .prepare("UPDATE workspace SET runtime_count = $1 WHERE id = $2")
            .map_err(|e| self.fail(detail(&e)))?;
        for (id, count) in counts {
            let done = self.client.execute(&stmt, &[count, id]);
            done.map_err(|e| self.fail(format!("workspace.runtime_count: {}", detail(&e))))?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Step<()> {
        let done = self.client.batch_execute("COMMIT");
        done.map_err(|e| self.fail(detail(&e)))
    }
}

/// Rows of one table streamed through binary COPY.
struct Copy<'a> {
    writer: BinaryCopyInWriter<'a>,
    table: &'static Table,
    failed: fn(String) -> Failed,
}

impl Copy<'_> {
    fn fail(&self, e: &postgres::Error) -> Failed {
        (self.failed)(format!("writing {}: {}", self.table.name, detail(e)))
    }
}

impl TableWriter for Copy<'_> {
    fn push(&mut self, row: Vec<Cell>) -> Step<()> {
        let values: Vec<&(dyn ToSql + Sync)> =
            row.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        let done = self.writer.write(&values);
        done.map_err(|e| self.fail(&e))
    }

    fn finish(self: Box<Self>) -> Step<()> {
        let (table, failed) = (self.table, self.failed);
        self.writer
            .finish()
            .map(drop)
            .map_err(|e| failed(format!("writing {}: {}", table.name, detail(&e))))
    }
}
