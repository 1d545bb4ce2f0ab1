//! `agenthub copy-data --from SOURCE --to DEST`: a whole install moved
//! between engines, a SQLite file into an empty PostgreSQL database and
//! back. The copy itself (one snapshot of the source, one transaction on
//! the destination, the check of counts and usage totals) is
//! [`store::copy::copy_data`]; this names the two databases and words the
//! report.

use std::path::PathBuf;

use crate::config::DatabaseConfig;
use crate::store;

pub use crate::store::copy::{CopyError, CopyReport};

/// Whether `target` is a PostgreSQL URL rather than a SQLite file path.
pub fn is_postgres(target: &str) -> bool {
    target.starts_with("postgres://") || target.starts_with("postgresql://")
}

/// The database a `--from` / `--to` argument names, with the other
/// settings (timeouts) of `base`.
pub fn database_at(base: &DatabaseConfig, target: &str) -> Result<DatabaseConfig, String> {
    if target.is_empty() {
        return Err(
            "a database to copy from and to must be named (a file or a postgres:// URL)".into(),
        );
    }
    let mut config = base.clone();
    if is_postgres(target) {
        config.url = Some(target.to_string());
    } else {
        config.url = None;
        config.path = PathBuf::from(target);
    }
    Ok(config)
}

/// Copies `from` into `to`; returns the report's lines: `table: N rows`
/// for every table, then `usage totals match for N workspace(s)`.
pub fn run(base: &DatabaseConfig, from: &str, to: &str) -> Result<Vec<String>, String> {
    let from = database_at(base, from)?;
    let to = database_at(base, to)?;
    let report = store::copy::copy_data(&from, &to).map_err(|e| e.to_string())?;
    Ok(lines(&report))
}

/// The report as printed.
pub fn lines(report: &CopyReport) -> Vec<String> {
    let mut lines: Vec<String> = report
        .tables
        .iter()
        .map(|(table, rows)| format!("{table}: {rows} rows"))
        .collect();
    lines.push(format!(
        "usage totals match for {} workspace(s)",
        report.workspaces
    ));
    lines
}
