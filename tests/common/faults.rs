//! Faults injected into a test app's database with DDL, on either engine:
//! a trigger that refuses some inserts or updates, or a table renamed
//! away. No store operation makes a database misbehave, so these are
//! written against each engine directly.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::sqlite::open_sql;
use super::{TestApp, TestDb};

/// A way for the database to misbehave.
pub enum Fault<'a> {
    /// Inserts into `table` fail where `when` (a condition on `NEW`) holds.
    RefuseInsert { table: &'a str, when: &'a str },
    /// Updates of `column` in `table` fail where `when` holds.
    RefuseUpdate {
        table: &'a str,
        column: &'a str,
        when: &'a str,
    },
    /// `table` is gone (renamed to `<table>_gone`): whatever uses it fails.
    MissingTable(&'a str),
}

/// Prefix of the triggers [`fault`] makes, so [`clear_faults`] finds them.
const TRIGGER_PREFIX: &str = "injected_fault_";

/// Makes the app's database misbehave as `fault` says, until
/// [`clear_faults`] (a missing table stays missing).
pub fn fault(app: &TestApp, fault: Fault<'_>) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("{TRIGGER_PREFIX}{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let ddl = match &app.database {
        TestDb::Sqlite(_) => match fault {
            Fault::RefuseInsert { table, when } => format!(
                "CREATE TRIGGER {name} BEFORE INSERT ON {table}
                 WHEN {when} BEGIN SELECT RAISE(ABORT, 'injected fault'); END;"
            ),
            Fault::RefuseUpdate {
                table,
                column,
                when,
            } => format!(
                "CREATE TRIGGER {name} BEFORE UPDATE OF {column} ON {table}
                 WHEN {when} BEGIN SELECT RAISE(ABORT, 'injected fault'); END;"
            ),
            Fault::MissingTable(table) => format!("ALTER TABLE {table} RENAME TO {table}_gone;"),
        },
        TestDb::Postgres(_) => {
            let raise = format!(
                "CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$;"
            );
            match fault {
                Fault::RefuseInsert { table, when } => format!(
                    "{raise} CREATE TRIGGER {name} BEFORE INSERT ON {table}
                     FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION {name}();"
                ),
                Fault::RefuseUpdate {
                    table,
                    column,
                    when,
                } => format!(
                    "{raise} CREATE TRIGGER {name} BEFORE UPDATE OF {column} ON {table}
                     FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION {name}();"
                ),
                Fault::MissingTable(table) => {
                    format!("ALTER TABLE {table} RENAME TO {table}_gone;")
                }
            }
        }
    };
    execute(&app.database, &ddl);
}

/// Drops every trigger [`fault`] made: writes succeed again.
pub fn clear_faults(app: &TestApp) {
    let list = match &app.database {
        TestDb::Sqlite(_) => format!(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '{TRIGGER_PREFIX}%'"
        ),
        TestDb::Postgres(_) => format!(
            "SELECT DISTINCT trigger_name || ' ON ' || event_object_table
             FROM information_schema.triggers
             WHERE trigger_schema = current_schema() AND trigger_name LIKE '{TRIGGER_PREFIX}%'"
        ),
    };
    for row in super::select_in(&app.database, &list) {
        let name = row[0].as_str().unwrap_or_default().to_string();
        execute(&app.database, &format!("DROP TRIGGER {name};"));
    }
}

fn execute(db: &TestDb, ddl: &str) {
    match db {
        TestDb::Sqlite(path) => open_sql(path)
            .execute_batch(ddl)
            .unwrap_or_else(|e| panic!("{ddl}: {e}")),
        TestDb::Postgres(url) => super::off_runtime(|| {
            postgres::Client::connect(url, postgres::NoTls)
                .and_then(|mut client| client.batch_execute(ddl))
                .unwrap_or_else(|e| panic!("{ddl}: {e}"))
        }),
    }
}
