//! Copies the WAL back into the database file in the background, so the
//! writer thread only appends to the WAL and syncs it.
//!
//! SQLite's own automatic checkpoint runs inside the commit that crosses
//! the threshold: on the one writer, every request waiting for the next
//! batch would wait for it too. A `PASSIVE` checkpoint from a connection of
//! its own runs beside the writer instead (it copies what no reader still
//! needs and never blocks a writer). The writer keeps an automatic
//! checkpoint at a far higher threshold, so the WAL stays bounded even if
//! this thread falls behind.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use rusqlite::Connection;

/// How often the WAL is checkpointed.
const EVERY: Duration = Duration::from_millis(100);

/// WAL pages past which the writer checkpoints in its own commit (SQLite's
/// default is 1,000; ~40 MiB of 4 KiB pages here).
pub(super) const WRITER_AUTOCHECKPOINT: i64 = 10_000;

/// The running checkpointer; it stops when this is dropped.
pub(super) struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    pub(super) fn spawn(path: &Path, busy_timeout: Duration) -> Result<Checkpointer, String> {
        let conn = super::open_connection(path, busy_timeout).map_err(|e| e.to_string())?;
        let (stop, stopped) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("agenthub-checkpointer".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    if let Err(e) = checkpoint(&conn) {
                        // the writer's own checkpoint is the fallback
                        log::debug!("background checkpoint failed: {e}");
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Checkpointer { _stop: stop })
    }
}

fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}
