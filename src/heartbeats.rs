//! Group commit for heartbeats.
//!
//! A heartbeat of a runtime that is already online only moves its
//! `last_seen_at`: liveness, not data anyone pays for. Such heartbeats are
//! answered at once and their times written together, one transaction per
//! [`FLUSH_EVERY`], instead of one fsync per heartbeat. Losing the last
//! fraction of a second of them in a crash only makes a runtime look a
//! moment older. Everything that matters (registrations, status changes,
//! tasks, usage) is still committed before it is acknowledged: a heartbeat
//! that brings a runtime back online is written through at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::{RuntimeId, Timestamp};
use crate::store::{runtimes, Error, Store};

/// How often buffered heartbeats are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

#[derive(Clone, Default)]
pub struct Heartbeats {
    pending: Arc<Mutex<HashMap<RuntimeId, Timestamp>>>,
}

impl Heartbeats {
    /// Remembers that `runtime` was seen at `at`.
    pub fn record(&self, runtime: RuntimeId, at: Timestamp) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(runtime, at);
    }

    /// Writes every buffered heartbeat in one transaction (blocking).
    /// Returns how many were written.
    pub fn flush(&self, db: &Store) -> Result<usize, Error> {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.is_empty() {
            return Ok(0);
        }
        let n = batch.len();
        // in id order: flushes of several nodes (and registrations) lock
        // the same rows in one order, so they never deadlock on an engine
        // with row locks
        let mut written: Vec<_> = batch.iter().map(|(r, at)| (*r, *at)).collect();
        written.sort_unstable_by_key(|(runtime, _)| *runtime);
        let result = db.write_blocking(move |tx| -> Result<_, Error> {
            for (runtime, at) in &written {
                runtimes::touch_seen(tx, *runtime, *at)?;
            }
            Ok(())
        });
        if let Err(e) = result {
            // keep them for the next flush, unless newer ones arrived
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for (runtime, at) in batch {
                pending.entry(runtime).or_insert(at);
            }
            return Err(e);
        }
        Ok(n)
    }
}
