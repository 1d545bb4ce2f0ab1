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
//! * one member may hold at most [`STREAMS_PER_USER`] streams.
//!
//! Events about an agent's work carry the agent's [`Audience`], so a stream
//! delivers them only to members who may read that agent.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock, Weak};

use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use crate::domain::{
    AgentId, AgentStatus, Role, RuntimeId, TaskId, UserId, Visibility, WorkspaceId,
};

/// Largest daemon payload (`progress`, `messages`) relayed to streams.
pub const MAX_RELAYED_BYTES: usize = 64 * 1024;
/// Bytes that may wait for one subscriber before it is dropped.
pub const SUBSCRIBER_BUDGET: usize = 1024 * 1024;
/// Open event streams allowed per user (users are made by the server's
/// administrator, so this bounds the streams of the whole server).
pub const STREAMS_PER_USER: usize = 8;
/// Bookkeeping charged per queued event on top of its text.
const EVENT_OVERHEAD: usize = 128;

pub const DAEMON_REGISTER: &str = "daemon:register";
pub const AGENT_STATUS: &str = "agent:status";

/// Who may receive an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Audience {
    /// Every member of the workspace.
    Workspace,
    /// Those who may read the agent: everyone for a workspace-visible
    /// agent; its owner and the workspace's owners/admins for a private one.
    Agent {
        owner: Option<UserId>,
        private: bool,
    },
}

impl Audience {
    /// Workspace owners and admins only (e.g. a task whose agent is gone).
    pub const MANAGERS: Audience = Audience::Agent {
        owner: None,
        private: true,
    };

    pub fn may_read(&self, user: UserId, role: Role) -> bool {
        match *self {
            Audience::Workspace => true,
            Audience::Agent { owner, private } => {
                !private || owner == Some(user) || role.is_manager()
            }
        }
    }

    /// The audience of `agent`'s events.
    pub fn of_agent(agent: &crate::store::agents::Agent) -> Audience {
        Audience::Agent {
            owner: agent.owner_id,
            private: agent.visibility != Visibility::Workspace,
        }
    }
}

#[derive(Debug)]
pub struct Event {
    /// `daemon:register`, `task:…`, `agent:status`.
    pub kind: Cow<'static, str>,
    pub workspace_id: WorkspaceId,
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

/// What a subscriber has waiting, shared by the bus and the stream.
#[derive(Default)]
struct Queue {
    events: VecDeque<Arc<Event>>,
    bytes: usize,
    dropped: bool,
}

#[derive(Default)]
struct Mailbox {
    queue: Mutex<Queue>,
    ready: Notify,
}

struct Subscriber {
    id: u64,
    mailbox: Arc<Mailbox>,
}

#[derive(Default)]
struct Registry {
    by_workspace: Mutex<HashMap<WorkspaceId, Vec<Subscriber>>>,
    streams_per_user: Mutex<HashMap<UserId, usize>>,
    next_id: AtomicU64,
    /// Where what this node publishes also goes, for the other nodes on
    /// the same database (`crate::relay`); unset on one node.
    relay: OnceLock<mpsc::SyncSender<Outgoing>>,
}

/// What a node hands its relay.
pub enum Outgoing {
    Event(Arc<Event>),
    /// A token or a membership changed: streams check their caller again.
    AccessChanged,
    /// A task was queued for a runtime: daemon sockets watching it on any
    /// node are woken (`crate::daemon_hub`).
    TaskAvailable {
        runtime: RuntimeId,
        task: TaskId,
    },
}

/// Most messages that may wait for the relay; past that they are dropped
/// (and logged), never the publisher slowed.
pub const RELAY_BACKLOG: usize = 4096;

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
    pub fn publish(&self, kind: &'static str, workspace_id: WorkspaceId, payload: Value) {
        self.publish_to(kind, workspace_id, Audience::Workspace, payload);
    }

    /// Hands the event to every subscriber of its workspace; never blocks,
    /// and having no subscriber is not an error. A subscriber whose queue
    /// would exceed its budget is dropped instead.
    pub fn publish_to(
        &self,
        kind: &'static str,
        workspace_id: WorkspaceId,
        audience: Audience,
        payload: Value,
    ) {
        let data = json!({"type": kind, "workspace_id": workspace_id, "payload": payload});
        let event = Arc::new(Event {
            kind: Cow::Borrowed(kind),
            workspace_id,
            audience,
            data: data.to_string(),
        });
        self.deliver(event.clone());
        self.relay(Outgoing::Event(event));
    }

    /// Hands `message` to the relay, if this node has one.
    fn relay(&self, message: Outgoing) {
        if let Some(relay) = self.registry.relay.get() {
            if let Err(mpsc::TrySendError::Full(_)) = relay.try_send(message) {
                log::warn!("an event for the other nodes was dropped: their relay fell behind");
            }
        }
    }

    /// Sends what this node publishes to `relay` too (once; later calls
    /// change nothing).
    pub fn set_relay(&self, relay: mpsc::SyncSender<Outgoing>) {
        let _ = self.registry.relay.set(relay);
    }

    /// A handle that does not keep the bus alive (for the relay's reader).
    pub fn downgrade(&self) -> WeakBus {
        WeakBus {
            registry: Arc::downgrade(&self.registry),
            closing: self.closing.subscribe(),
            access: self.access.clone(),
        }
    }

    /// Hands `event` to this node's subscribers of its workspace.
    pub fn deliver(&self, event: Arc<Event>) {
        deliver(&self.registry, event);
    }
}

/// [`EventBus::deliver`] on a registry.
fn deliver(registry: &Registry, event: Arc<Event>) {
    {
        let workspace_id = event.workspace_id;
        let size = cost(&event);
        let mut map = lock(&registry.by_workspace);
        let Some(subscribers) = map.get_mut(&workspace_id) else {
            return;
        };
        subscribers.retain(|sub| {
            let mut queue = lock(&sub.mailbox.queue);
            let keep = queue.bytes == 0 || queue.bytes + size <= SUBSCRIBER_BUDGET;
            if keep {
                queue.bytes += size;
                queue.events.push_back(event.clone());
            } else {
                log::info!("dropping an event stream of {workspace_id}: it fell behind");
                *queue = Queue {
                    dropped: true,
                    ..Queue::default()
                };
            }
            drop(queue);
            sub.mailbox.ready.notify_one();
            keep
        });
        if subscribers.is_empty() {
            map.remove(&workspace_id);
        }
    }
}

/// The bus as the relay's reader holds it: gone once the node's bus is.
pub struct WeakBus {
    registry: Weak<Registry>,
    closing: watch::Receiver<bool>,
    access: watch::Sender<u64>,
}

impl WeakBus {
    /// Whether the bus is gone or shutting down.
    pub fn is_closed(&self) -> bool {
        self.registry.strong_count() == 0 || *self.closing.borrow()
    }

    /// Hands an event another node published to this node's subscribers.
    pub fn deliver(&self, event: Event) {
        if let Some(registry) = self.registry.upgrade() {
            deliver(&registry, Arc::new(event));
        }
    }

    /// Another node changed a token or a membership.
    pub fn access_changed(&self) {
        self.access.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl EventBus {
    /// `agent:status {agent_id, status}`.
    pub fn agent_status(
        &self,
        audience: Audience,
        workspace_id: WorkspaceId,
        agent_id: AgentId,
        status: AgentStatus,
    ) {
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
        workspace_id: WorkspaceId,
        task_id: TaskId,
        agent_id: Option<AgentId>,
    ) {
        self.publish_to(
            kind,
            workspace_id,
            audience,
            json!({"task_id": task_id, "agent_id": agent_id}),
        );
    }

    /// A task that failed (or expired, or was cancelled), with the code of
    /// why: `{task_id, agent_id, failure_reason}`.
    pub fn task_ended(
        &self,
        kind: &'static str,
        audience: Audience,
        workspace_id: WorkspaceId,
        task_id: TaskId,
        agent_id: Option<AgentId>,
        reason: Option<&str>,
    ) {
        self.publish_to(
            kind,
            workspace_id,
            audience,
            json!({"task_id": task_id, "agent_id": agent_id, "failure_reason": reason}),
        );
    }

    /// `task:retried`: `task` was queued to run again the work of
    /// `parent_task_id`, as its `attempt`.
    pub fn retried(&self, audience: Audience, task: &crate::store::tasks::Task) {
        self.publish_to(
            "task:retried",
            task.workspace_id,
            audience,
            json!({"task_id": task.id, "agent_id": task.agent_id,
                   "parent_task_id": task.parent_task_id, "attempt": task.attempt}),
        );
    }

    /// Follows `workspace`'s events.
    pub fn subscribe(&self, workspace: WorkspaceId) -> Subscription {
        let mailbox = Arc::new(Mailbox::default());
        let id = self.registry.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.registry.by_workspace)
            .entry(workspace)
            .or_default()
            .push(Subscriber {
                id,
                mailbox: mailbox.clone(),
            });
        Subscription {
            registry: self.registry.clone(),
            workspace,
            id,
            mailbox,
        }
    }

    /// Counts one more open stream for `user`, or `None` when they already
    /// hold [`STREAMS_PER_USER`].
    pub fn open_stream(&self, user: UserId) -> Option<StreamSlot> {
        let mut counts = lock(&self.registry.streams_per_user);
        let count = counts.entry(user).or_default();
        if *count >= STREAMS_PER_USER {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            registry: self.registry.clone(),
            user,
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
        self.relay(Outgoing::AccessChanged);
    }

    /// Changes whenever [`EventBus::access_changed`] is called.
    pub fn access(&self) -> watch::Receiver<u64> {
        self.access.subscribe()
    }

    /// How many streams follow `workspace` (for tests and metrics).
    pub fn subscribers(&self, workspace: WorkspaceId) -> usize {
        lock(&self.registry.by_workspace)
            .get(&workspace)
            .map_or(0, Vec::len)
    }
}

/// One stream's queue; leaving it (drop) unsubscribes.
pub struct Subscription {
    registry: Arc<Registry>,
    workspace: WorkspaceId,
    id: u64,
    mailbox: Arc<Mailbox>,
}

/// What [`Subscription::try_recv`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Empty {
    /// Nothing waiting yet.
    Waiting,
    /// The bus dropped this subscriber for falling behind.
    Dropped,
}

impl Subscription {
    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Result<Arc<Event>, Empty> {
        let mut queue = lock(&self.mailbox.queue);
        match queue.events.pop_front() {
            Some(event) => {
                queue.bytes = queue.bytes.saturating_sub(cost(&event));
                Ok(event)
            }
            None if queue.dropped => Err(Empty::Dropped),
            None => Err(Empty::Waiting),
        }
    }

    /// The next event, or `None` once the subscriber was dropped for
    /// falling behind.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        loop {
            match self.try_recv() {
                Ok(event) => return Some(event),
                Err(Empty::Dropped) => return None,
                // a notification sent before this wait is kept as a permit
                Err(Empty::Waiting) => self.mailbox.ready.notified().await,
            }
        }
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

/// An open stream counted against its user; dropping it frees the slot.
pub struct StreamSlot {
    registry: Arc<Registry>,
    user: UserId,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.registry.streams_per_user);
        if let Some(count) = counts.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.user);
            }
        }
    }
}
