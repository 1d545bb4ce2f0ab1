//! `copy-data` on a SQLite file: reading one as a snapshot (one read
//! transaction on a plain connection; the WAL keeps it consistent while
//! the server writes) and writing a new one in one transaction.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rusqlite::types::{ToSql, ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
use uuid::Uuid;

use crate::config::DatabaseConfig;
use crate::store::copy::{
    add_totals, bad_value, Cell, Database, Destination, Failed, Kind, Source, Step, Table,
    TableWriter, Totals, DATE_TEXT, QUARTER_TEXT, TIME_TEXT,
};

/// Rows per INSERT statement.
const BATCH_ROWS: usize = 256;

/// One side of a copy: the connection, inside its transaction.
struct Side {
    conn: Connection,
    /// Which side a failure is on.
    failed: fn(String) -> Failed,
}

/// The file `config` names, read as one snapshot from here on.
pub(in crate::store) fn source(config: &DatabaseConfig) -> Result<Box<dyn Source>, String> {
    let path = &config.path;
    if !path.is_file() {
        return Err("the file does not exist".into());
    }
    // read-write without create: a live file's WAL index may need its
    // -shm made; nothing is written (query_only)
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| e.to_string())?;
    conn.busy_timeout(super::busy_timeout(config))
        .map_err(|e| e.to_string())?;
    conn.pragma_update(None, "query_only", true)
        .map_err(|e| e.to_string())?;
    // the snapshot starts at the first read and lasts until the
    // connection goes
    conn.execute_batch("BEGIN").map_err(|e| e.to_string())?;
    check_version(&conn)?;
    Ok(Box::new(Side {
        conn,
        failed: Failed::Source,
    }))
}

/// The source's migrations are the ones this binary has: no column is
/// missing, none is unknown.
fn check_version(conn: &Connection) -> Result<(), String> {
    let found: Option<i64> = conn
        .query_row(
            "SELECT max(version) FROM refinery_schema_history",
            [],
            |r| r.get(0),
        )
        .map_err(|e| format!("it is not an agenthub database ({e})"))?;
    let known = super::embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max();
    match (found, known) {
        (Some(found), Some(known)) if found < known => Err(format!(
            "its schema is at migration V{found}, this agenthub's at V{known}: run \
             `agenthub migrate --db FILE` on it (or start the server on it) first"
        )),
        (Some(found), Some(known)) if found > known => Err(format!(
            "its schema (migration V{found}) is newer than this agenthub's (V{known})"
        )),
        (None, _) => Err("it is not an agenthub database (no migration applied)".into()),
        _ => Ok(()),
    }
}

/// The new file `config` names, already migrated, in a write transaction.
pub(in crate::store) fn destination(
    config: &DatabaseConfig,
) -> Result<Box<dyn Destination>, String> {
    let conn = super::open_connection(&config.path, super::busy_timeout(config))
        .map_err(|e| e.to_string())?;
    // room for the indexes of big tables while they fill
    conn.execute_batch("PRAGMA cache_size = -65536; BEGIN IMMEDIATE")
        .map_err(|e| e.to_string())?;
    Ok(Box::new(Side {
        conn,
        failed: Failed::Destination,
    }))
}

/// Removes a destination file a failed copy made, with its -wal and -shm.
pub(in crate::store) fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_os_string();
        name.push(suffix);
        if let Err(e) = std::fs::remove_file(&name) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("cannot remove {}: {e}", Path::new(&name).display());
            }
        }
    }
}

impl Side {
    fn fail(&self, what: impl std::fmt::Display) -> Failed {
        (self.failed)(what.to_string())
    }
}

impl Database for Side {
    fn tables(&mut self) -> Step<BTreeSet<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
            .map_err(|e| self.fail(e))?;
        let names = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.fail(e));
        names
    }

    fn columns(&mut self, table: &Table) -> Step<BTreeSet<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .map_err(|e| self.fail(e))?;
        let names = stmt
            .query_map([table.name], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.fail(e));
        names
    }

    fn count(&mut self, table: &Table) -> Step<u64> {
        let sql = format!("SELECT count(*) FROM {}", table.quoted());
        let n: i64 = self
            .conn
            .query_row(&sql, [], |r| r.get(0))
            .map_err(|e| self.fail(format!("counting {}: {e}", table.name)))?;
        Ok(n.max(0) as u64)
    }

    fn add_totals(&mut self, totals: &mut Totals, offset: usize, sql: &str) -> Step<()> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.fail(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.fail(e))?;
        while let Some(row) = rows.next().map_err(|e| self.fail(e))? {
            let id: String = row.get(0).map_err(|e| self.fail(e))?;
            let id = Uuid::try_parse(&id)
                .map_err(|e| self.fail(format!("usage of workspace {id:?}: {e}")))?;
            let mut sums = [0i128; 4];
            for (i, sum) in sums.iter_mut().enumerate() {
                *sum = i128::from(row.get::<_, i64>(i + 1).map_err(|e| self.fail(e))?);
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
            // the order PostgreSQL's seq must follow
            if table.seq { " ORDER BY rowid" } else { "" }
        );
        let reading = |e: rusqlite::Error| self.fail(format!("reading {}: {e}", table.name));
        let mut stmt = self.conn.prepare(&sql).map_err(reading)?;
        let mut rows = stmt.query([]).map_err(reading)?;
        let mut read = 0;
        while let Some(row) = rows.next().map_err(reading)? {
            let mut cells = Vec::with_capacity(table.columns.len());
            for (i, (column, kind)) in table.columns.iter().enumerate() {
                let value = row.get_ref(i).map_err(reading)?;
                cells.push(cell(table, column, *kind, value).map_err(|e| self.fail(e))?);
            }
            each(cells)?;
            read += 1;
        }
        Ok(read)
    }
}

/// The value of `column` as SQLite stores it.
fn cell(table: &Table, column: &str, kind: Kind, value: ValueRef<'_>) -> Result<Cell, String> {
    let bad = |what: String| bad_value(table, column, what);
    let text = |value: ValueRef<'_>| match value {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|e| bad(format!("not UTF-8 text: {e}"))),
        other => Err(bad(format!("{:?} where text belongs", other.data_type()))),
    };
    if let ValueRef::Null = value {
        return Ok(Cell::Null);
    }
    Ok(match kind {
        Kind::Int => match value {
            ValueRef::Integer(n) => Cell::Int(n),
            other => return Err(bad(format!("{:?} is not an integer", other.data_type()))),
        },
        Kind::Text => Cell::Text(text(value)?),
        Kind::Json => Cell::Json(text(value)?),
        Kind::Id => {
            let s = text(value)?;
            Cell::Id(Uuid::try_parse(&s).map_err(|e| bad(format!("{s:?} is not a UUID: {e}")))?)
        }
        Kind::Time => {
            let s = text(value)?;
            Cell::Time(
                DateTime::parse_from_rfc3339(&s)
                    .map_err(|e| bad(format!("{s:?} is not a time: {e}")))?
                    .with_timezone(&Utc),
            )
        }
        Kind::Date => {
            let s = text(value)?;
            Cell::Date(
                NaiveDate::parse_from_str(&s, DATE_TEXT)
                    .map_err(|e| bad(format!("{s:?} is not a day: {e}")))?,
            )
        }
        Kind::Quarter => {
            let s = text(value)?;
            Cell::Quarter(
                NaiveDateTime::parse_from_str(&format!("{s}:00"), "%Y-%m-%dT%H:%M:%S")
                    .map_err(|e| bad(format!("{s:?} is not a quarter hour: {e}")))?
                    .and_utc(),
            )
        }
    })
}

impl ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Cell::Null => ToSqlOutput::Owned(Value::Null),
            Cell::Int(n) => ToSqlOutput::Owned(Value::Integer(*n)),
            Cell::Text(s) | Cell::Json(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            // lower-case and hyphenated, as the engine writes ids
            Cell::Id(id) => ToSqlOutput::Owned(Value::Text(id.hyphenated().to_string())),
            Cell::Time(t) => ToSqlOutput::Owned(Value::Text(t.format(TIME_TEXT).to_string())),
            Cell::Date(d) => ToSqlOutput::Owned(Value::Text(d.format(DATE_TEXT).to_string())),
            Cell::Quarter(q) => ToSqlOutput::Owned(Value::Text(q.format(QUARTER_TEXT).to_string())),
        })
    }
}

impl Destination for Side {
    fn is_empty(&mut self, table: &Table) -> Step<bool> {
        let sql = format!("SELECT NOT EXISTS (SELECT 1 FROM {})", table.quoted());
        self.conn
            .query_row(&sql, [], |r| r.get(0))
            .map_err(|e| self.fail(e))
    }

    fn writer(&mut self, table: &'static Table) -> Step<Box<dyn TableWriter + '_>> {
        Ok(Box::new(Inserts {
            side: self,
            table,
            batch: Vec::with_capacity(BATCH_ROWS * table.columns.len()),
        }))
    }

    fn set_runtime_counts(&mut self, counts: &[(Uuid, i64)]) -> Step<()> {
        let mut stmt = self
            .conn
            .prepare("UPDATE workspace SET runtime_count = ?1 WHERE id = ?2")
            .map_err(|e| self.fail(e))?;
        for (id, count) in counts {
            stmt.execute((count, id.hyphenated().to_string()))
                .map_err(|e| self.fail(format!("workspace.runtime_count: {e}")))?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Step<()> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| self.fail(e))?;
        // one file, like a backup: the copy's WAL folded into it
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            log::warn!("the copy is committed but its WAL not checkpointed: {e}");
        }
        Ok(())
    }
}

/// Multi-row INSERTs of up to [`BATCH_ROWS`] rows.
struct Inserts<'a> {
    side: &'a Side,
    table: &'static Table,
    /// The cells of the waiting rows, row after row.
    batch: Vec<Cell>,
}

impl Inserts<'_> {
    fn flush(&mut self) -> Step<()> {
        let width = self.table.columns.len();
        let rows = self.batch.len() / width;
        if rows == 0 {
            return Ok(());
        }
        let row = format!("({})", vec!["?"; width].join(", "));
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {}",
            self.table.quoted(),
            self.table.column_list(),
            vec![row; rows].join(", ")
        );
        let side = self.side;
        let writing = |e: rusqlite::Error| side.fail(format!("writing {}: {e}", self.table.name));
        let mut stmt = side.conn.prepare_cached(&sql).map_err(writing)?;
        stmt.execute(rusqlite::params_from_iter(self.batch.iter()))
            .map_err(writing)?;
        self.batch.clear();
        Ok(())
    }
}

impl TableWriter for Inserts<'_> {
    fn push(&mut self, row: Vec<Cell>) -> Step<()> {
        self.batch.extend(row);
        if self.batch.len() >= BATCH_ROWS * self.table.columns.len() {
            self.flush()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Step<()> {
        self.flush()
    }
}
