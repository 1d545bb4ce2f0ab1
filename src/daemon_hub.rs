//! The daemons' open control sockets (`GET /api/daemon/ws`), by runtime.
//! When a task is queued for a runtime, every socket watching it is sent a
//! `daemon:task_available` wake-up, so its daemon claims at once instead of
//! at its next poll. A wake-up is only a hint: a daemon that misses one
//! still finds the task when it polls.
//!
//! Sockets are connections, so each node keeps its own; on PostgreSQL a
//! wake-up is also handed to the relay (`crate::relay`), and every other
//! node sharing the database wakes its sockets watching that runtime. A
//! wake-up the relay has no room for is dropped and logged: the daemon
//! finds the task at its next poll.
//!
//! Bounds, so no daemon can make the server hold memory for it or wait
//! for it:
//! * a socket has room for [`SOCKET_QUEUE`] frames; publishing never waits,
//!   and a socket whose room is full (its daemon stopped reading) is let go
//!   at once: its socket ends, and the daemon reconnects and polls meanwhile;
//! * one member's daemons hold at most [`SOCKETS_PER_MEMBER`] sockets;
//! * a runtime is watched by at most [`SOCKETS_PER_RUNTIME`] sockets: a new
//!   one replaces the oldest, most likely a connection that died without a
//!   word (a laptop that changed networks) and that only its idle timeout
//!   would otherwise end.

use std::collections::HashMap;
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard, OnceLock};

use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::domain::{RuntimeId, TaskId, UserId};
use crate::events::Outgoing;

/// Frames that may wait for one socket before it is let go.
pub const SOCKET_QUEUE: usize = 32;
/// Sockets one member's daemons may hold at a time.
pub const SOCKETS_PER_MEMBER: usize = 16;
/// Sockets that may watch one runtime; a newer one replaces the oldest.
pub const SOCKETS_PER_RUNTIME: usize = 4;

/// Server → daemon: a task was queued for one of the socket's runtimes.
pub const TASK_AVAILABLE: &str = "daemon:task_available";

/// A frame, serialized once and shared by every socket it goes to.
pub type Frame = Arc<str>;

struct Entry {
    member: UserId,
    runtimes: Vec<RuntimeId>,
    /// The only sender: dropping the entry ends the socket's queue.
    tx: mpsc::Sender<Frame>,
}

#[derive(Default)]
struct Registry {
    sockets: HashMap<u64, Entry>,
    /// Socket ids per runtime, oldest first.
    by_runtime: HashMap<RuntimeId, Vec<u64>>,
    per_member: HashMap<UserId, usize>,
    next_id: u64,
}

impl Registry {
    /// Forgets socket `id`; its queue ends once drained. Idempotent.
    fn remove(&mut self, id: u64) {
        let Some(entry) = self.sockets.remove(&id) else {
            return;
        };
        for runtime in &entry.runtimes {
            if let Some(ids) = self.by_runtime.get_mut(runtime) {
                ids.retain(|s| *s != id);
                if ids.is_empty() {
                    self.by_runtime.remove(runtime);
                }
            }
        }
        if let Some(count) = self.per_member.get_mut(&entry.member) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_member.remove(&entry.member);
            }
        }
    }

    /// Makes room for one more socket on each of `runtimes`.
    fn evict_oldest(&mut self, runtimes: &[RuntimeId]) {
        for runtime in runtimes {
            while let Some(&oldest) = self
                .by_runtime
                .get(runtime)
                .filter(|ids| ids.len() >= SOCKETS_PER_RUNTIME)
                .and_then(|ids| ids.first())
            {
                log::info!("replacing the oldest socket of runtime {runtime}");
                self.remove(oldest);
            }
        }
    }
}

struct Inner {
    registry: Mutex<Registry>,
    closing: watch::Sender<bool>,
    /// Where wake-ups also go, for the other nodes on the same database;
    /// unset on one node.
    relay: OnceLock<std_mpsc::SyncSender<Outgoing>>,
}

#[derive(Clone)]
pub struct DaemonHub {
    inner: Arc<Inner>,
}

impl Default for DaemonHub {
    fn default() -> Self {
        DaemonHub::new()
    }
}

fn lock(inner: &Inner) -> MutexGuard<'_, Registry> {
    // plain maps: a panic elsewhere cannot leave them half-updated
    inner.registry.lock().unwrap_or_else(|p| p.into_inner())
}

impl DaemonHub {
    pub fn new() -> DaemonHub {
        DaemonHub {
            inner: Arc::new(Inner {
                registry: Mutex::default(),
                closing: watch::channel(false).0,
                relay: OnceLock::new(),
            }),
        }
    }

    /// Adds a socket acting for `member` that watches `runtimes`, or `None`
    /// when the member already holds [`SOCKETS_PER_MEMBER`].
    pub fn join(&self, member: UserId, runtimes: &[RuntimeId]) -> Option<Socket> {
        let (tx, frames) = mpsc::channel(SOCKET_QUEUE);
        let mut registry = lock(&self.inner);
        if registry.per_member.get(&member).copied().unwrap_or(0) >= SOCKETS_PER_MEMBER {
            return None;
        }
        registry.evict_oldest(runtimes);
        let id = registry.next_id;
        registry.next_id += 1;
        *registry.per_member.entry(member).or_default() += 1;
        for runtime in runtimes {
            registry.by_runtime.entry(*runtime).or_default().push(id);
        }
        let entry = Entry {
            member,
            runtimes: runtimes.to_vec(),
            tx,
        };
        registry.sockets.insert(id, entry);
        Some(Socket {
            hub: self.inner.clone(),
            id,
            frames,
        })
    }

    /// Sends wake-ups to `relay` too, for the other nodes (once; later
    /// calls change nothing).
    pub fn set_relay(&self, relay: std_mpsc::SyncSender<Outgoing>) {
        let _ = self.inner.relay.set(relay);
    }

    /// Wakes the daemons watching `runtime`, on this node and (through the
    /// relay) on the others: `task` was queued for it. Never waits; a
    /// socket with no room left is let go.
    pub fn task_available(&self, runtime: RuntimeId, task: TaskId) {
        if let Some(relay) = self.inner.relay.get() {
            let wakeup = Outgoing::TaskAvailable { runtime, task };
            if let Err(std_mpsc::TrySendError::Full(_)) = relay.try_send(wakeup) {
                log::warn!("a wake-up for the other nodes was dropped: their relay fell behind");
            }
        }
        self.wake(runtime, task);
    }

    /// Wakes this node's daemons watching `runtime` (for a wake-up another
    /// node relayed).
    pub fn wake(&self, runtime: RuntimeId, task: TaskId) {
        let mut registry = lock(&self.inner);
        let registry = &mut *registry;
        let Some(ids) = registry.by_runtime.get(&runtime) else {
            return;
        };
        let frame: Frame = json!({
            "type": TASK_AVAILABLE,
            "payload": {"runtime_id": runtime, "task_id": task},
        })
        .to_string()
        .into();
        let behind: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| {
                registry
                    .sockets
                    .get(id)
                    .is_none_or(|entry| entry.tx.try_send(frame.clone()).is_err())
            })
            .collect();
        for id in behind {
            log::info!("letting a daemon socket of runtime {runtime} go: it fell behind");
            registry.remove(id);
        }
    }

    /// How many sockets watch `runtime` (for tests and metrics).
    pub fn sockets(&self, runtime: RuntimeId) -> usize {
        lock(&self.inner)
            .by_runtime
            .get(&runtime)
            .map_or(0, Vec::len)
    }

    /// Ends every socket (at shutdown).
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Becomes `true` when the sockets should end.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }
}

/// One socket's place in the hub; dropping it leaves the hub.
pub struct Socket {
    hub: Arc<Inner>,
    id: u64,
    /// Frames to send; ends when the hub lets the socket go.
    pub frames: mpsc::Receiver<Frame>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        lock(&self.hub).remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_that_stops_reading_is_let_go_without_slowing_the_publisher() {
        let hub = DaemonHub::new();
        let runtime = RuntimeId::new();
        let mut reader = hub.join(UserId::new(), &[runtime]).unwrap();
        let mut stuck = hub.join(UserId::new(), &[runtime]).unwrap();
        let started = std::time::Instant::now();
        for _ in 0..10 * SOCKET_QUEUE {
            hub.task_available(runtime, TaskId::new());
            while reader.frames.try_recv().is_ok() {}
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(hub.sockets(runtime), 1, "only the reading socket is left");
        // what the stuck socket had queued is still there, then its queue ends
        let mut queued = 0;
        while stuck.frames.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, SOCKET_QUEUE);
        assert!(matches!(
            stuck.frames.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        drop(stuck);
        assert_eq!(hub.sockets(runtime), 1);
        drop(reader);
        assert_eq!(hub.sockets(runtime), 0);
    }

    #[test]
    fn a_member_holds_a_bounded_number_of_sockets() {
        let hub = DaemonHub::new();
        let member = UserId::new();
        let held: Vec<Socket> = (0..SOCKETS_PER_MEMBER)
            .map(|_| hub.join(member, &[RuntimeId::new()]).unwrap())
            .collect();
        assert!(hub.join(member, &[RuntimeId::new()]).is_none());
        assert!(hub.join(UserId::new(), &[RuntimeId::new()]).is_some());
        drop(held);
        assert!(hub.join(member, &[RuntimeId::new()]).is_some());
    }

    #[test]
    fn a_new_socket_of_a_busy_runtime_replaces_the_oldest() {
        let hub = DaemonHub::new();
        let (runtime, other) = (RuntimeId::new(), RuntimeId::new());
        let member = UserId::new();
        let mut oldest = hub.join(member, &[runtime, other]).unwrap();
        let _rest: Vec<Socket> = (1..SOCKETS_PER_RUNTIME)
            .map(|_| hub.join(member, &[runtime]).unwrap())
            .collect();
        let _newest = hub.join(member, &[runtime]).unwrap();
        assert_eq!(hub.sockets(runtime), SOCKETS_PER_RUNTIME);
        assert_eq!(hub.sockets(other), 0, "the replaced socket left entirely");
        assert!(matches!(
            oldest.frames.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }
}
