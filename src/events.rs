//! The in-process event bus: handlers and background jobs publish workspace
//! events after their transaction commits; each event stream is a
//! subscriber of one workspace.
//!
//! Bounds, so no client can make the server hold memory for it:
//! * an event is serialized once, at publish time, and shared by every
//!   subscriber (relayed daemon payloads are capped by the API at
//!   [`MAX_RELAYED_BYTES`]);
//! * each subscriber may have at most [`SUBSCRIBER_BUDGET`] bytes waiting;
//!   a subscriber that falls that far behind is dropped (its stream ends
//!   and the client reconnects), never the publisher slowed;
//! * one token may hold at most [`STREAMS_PER_TOKEN`] streams.
//!
//! Events about an agent's work carry the agent's [`Audience`], so a stream
//! delivers them only to members who may read that agent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use crate::domain::{Id, Role};

/// Largest daemon payload (`progress`, `messages`) relayed to streams.
pub const MAX_RELAYED_BYTES: usize = 64 * 1024;
/// Bytes that may wait for one subscriber before it is dropped.
pub const SUBSCRIBER_BUDGET: usize = 1024 * 1024;
/// Open event streams allowed per token.
pub const STREAMS_PER_TOKEN: usize = 8;
/// Bookkeeping charged per queued event on top of its text.
const EVENT_OVERHEAD: usize = 128;

pub const DAEMON_REGISTER: &str = "daemon:register";
pub const AGENT_STATUS: &str = "agent:status";

/// Who may receive an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Every member of the workspace.
    Workspace,
    /// Those who may read the agent: everyone for a workspace-visible
    /// agent; its owner and the workspace's owners/admins for a private one.
    Agent { owner: Option<Id>, private: bool },
}

impl Audience {
    /// Workspace owners and admins only (e.g. a task whose agent is gone).
    pub const MANAGERS: Audience = Audience::Agent {
        owner: None,
        private: true,
    };

    pub fn may_read(&self, user: Id, role: Role) -> bool {
        match *self {
            Audience::Workspace => true,
            Audience::Agent { owner, private } => {
                !private || owner == Some(user) || role.is_manager()
            }
        }
    }

    /// The audience of `agent`'s events.
    pub fn of_agent(agent: &crate::db::agents::Agent) -> Audience {
        Audience::Agent {
            owner: agent.owner_id,
            private: agent.visibility != "workspace",
        }
    }
}

#[derive(Debug)]
pub struct Event {
    /// `daemon:register`, `task:…`, `agent:status`.
    pub kind: &'static str,
    pub workspace_id: Id,
    pub audience: Audience,
    /// `{"type","workspace_id","payload"}` as sent on the stream.
    pub data: String,
}

impl Event {
    /// The event's payload, parsed back from its text (tests, logs).
    pub fn payload(&self) -> Value {
        serde_json::from_str::<Value>(&self.data)
            .map(|mut v| v["payload"].take())
            .unwrap_or(Value::Null)
    }
}

struct Subscriber {
    id: u64,
    sender: mpsc::UnboundedSender<Arc<Event>>,
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

#[derive(Default)]
struct Registry {
    by_workspace: Mutex<HashMap<Id, Vec<Subscriber>>>,
    streams_per_token: Mutex<HashMap<String, usize>>,
    next_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // plain maps: a panic elsewhere cannot leave them half-updated
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone)]
pub struct EventBus {
    registry: Arc<Registry>,
    /// Set when the server shuts down, so endless event streams end and
    /// do not hold the shutdown open.
    closing: watch::Sender<bool>,
    /// Bumped whenever a token is revoked or a membership changes, so open
    /// streams check again that their caller may still follow them.
    access: watch::Sender<u64>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

fn cost(event: &Event) -> usize {
    event.data.len() + EVENT_OVERHEAD
}

impl EventBus {
    pub fn new() -> EventBus {
        EventBus {
            registry: Arc::default(),
            closing: watch::channel(false).0,
            access: watch::channel(0).0,
        }
    }

    /// An event every member of the workspace may read.
    pub fn publish(&self, kind: &'static str, workspace_id: Id, payload: Value) {
        self.publish_to(kind, workspace_id, Audience::Workspace, payload);
    }

    /// Hands the event to every subscriber of its workspace; never blocks,
    /// and having no subscriber is not an error. A subscriber whose queue
    /// would exceed its budget is dropped instead.
    pub fn publish_to(
        &self,
        kind: &'static str,
        workspace_id: Id,
        audience: Audience,
        payload: Value,
    ) {
        let data = json!({"type": kind, "workspace_id": workspace_id, "payload": payload});
        let event = Arc::new(Event {
            kind,
            workspace_id,
            audience,
            data: data.to_string(),
        });
        let size = cost(&event);
        let mut map = lock(&self.registry.by_workspace);
        let Some(subscribers) = map.get_mut(&workspace_id) else {
            return;
        };
        subscribers.retain(|sub| {
            if sub.queued.load(Ordering::Relaxed) + size > SUBSCRIBER_BUDGET {
                log::info!("dropping an event stream of {workspace_id}: it fell behind");
                sub.dropped.store(true, Ordering::Relaxed);
                return false;
            }
            sub.queued.fetch_add(size, Ordering::Relaxed);
            sub.sender.send(event.clone()).is_ok()
        });
        if subscribers.is_empty() {
            map.remove(&workspace_id);
        }
    }

    /// `agent:status {agent_id, status}`.
    pub fn agent_status(&self, audience: Audience, workspace_id: Id, agent_id: Id, status: &str) {
        self.publish_to(
            AGENT_STATUS,
            workspace_id,
            audience,
            json!({"agent_id": agent_id, "status": status}),
        );
    }

    /// `task:<what> {task_id, agent_id}`.
    pub fn task(
        &self,
        kind: &'static str,
        audience: Audience,
        workspace_id: Id,
        task_id: Id,
        agent_id: Option<Id>,
    ) {
        self.publish_to(
            kind,
            workspace_id,
            audience,
            json!({"task_id": task_id, "agent_id": agent_id}),
        );
    }

    /// Follows `workspace`'s events.
    pub fn subscribe(&self, workspace: Id) -> Subscription {
        let (sender, receiver) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicBool::new(false));
        let id = self.registry.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.registry.by_workspace)
            .entry(workspace)
            .or_default()
            .push(Subscriber {
                id,
                sender,
                queued: queued.clone(),
                dropped: dropped.clone(),
            });
        Subscription {
            registry: self.registry.clone(),
            workspace,
            id,
            receiver,
            queued,
            dropped,
        }
    }

    /// Counts one more open stream for `token` (a key derived from it),
    /// or `None` when it already holds [`STREAMS_PER_TOKEN`].
    pub fn open_stream(&self, token: String) -> Option<StreamSlot> {
        let mut counts = lock(&self.registry.streams_per_token);
        let count = counts.entry(token.clone()).or_default();
        if *count >= STREAMS_PER_TOKEN {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            registry: self.registry.clone(),
            token,
        })
    }

    /// Ends every event stream (at shutdown).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Becomes `true` when the streams should end.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Tells open streams that a token or a membership changed.
    pub fn access_changed(&self) {
        self.access.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever [`EventBus::access_changed`] is called.
    pub fn access(&self) -> watch::Receiver<u64> {
        self.access.subscribe()
    }

    /// How many streams follow `workspace` (for tests and metrics).
    pub fn subscribers(&self, workspace: Id) -> usize {
        lock(&self.registry.by_workspace)
            .get(&workspace)
            .map_or(0, Vec::len)
    }
}

/// One stream's queue; leaving it (drop) unsubscribes.
pub struct Subscription {
    registry: Arc<Registry>,
    workspace: Id,
    id: u64,
    receiver: mpsc::UnboundedReceiver<Arc<Event>>,
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

impl Subscription {
    /// The next event, or `None` once the subscriber was dropped (see
    /// [`Subscription::was_dropped`]).
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        let event = self.receiver.recv().await?;
        self.queued.fetch_sub(cost(&event), Ordering::Relaxed);
        Some(event)
    }

    /// The next event if one is waiting (tests).
    pub fn try_recv(&mut self) -> Result<Arc<Event>, mpsc::error::TryRecvError> {
        let event = self.receiver.try_recv()?;
        self.queued.fetch_sub(cost(&event), Ordering::Relaxed);
        Ok(event)
    }

    /// Whether the bus dropped this subscriber for falling behind.
    pub fn was_dropped(&self) -> bool {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut map = lock(&self.registry.by_workspace);
        if let Some(subscribers) = map.get_mut(&self.workspace) {
            subscribers.retain(|s| s.id != self.id);
            if subscribers.is_empty() {
                map.remove(&self.workspace);
            }
        }
    }
}

/// An open stream counted against its token; dropping it frees the slot.
pub struct StreamSlot {
    registry: Arc<Registry>,
    token: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.registry.streams_per_token);
        if let Some(count) = counts.get_mut(&self.token) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.token);
            }
        }
    }
}
