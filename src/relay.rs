//! Events across the nodes that share one PostgreSQL database: what a node
//! publishes on its bus (events for the dashboard's streams, access
//! changes that make streams check their caller again) and the wake-ups
//! of its daemon sockets are also written to the database by a thread of
//! its own and read by every other node's reader thread, which hands them
//! to that node's subscribers and daemon sockets. On SQLite, or
//! when the database is unreachable, a node's events stay its own; events
//! are live updates, never a record, so one lost in an outage is not
//! replayed (a stream's client reloads what it shows).

use std::borrow::Cow;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::daemon_hub::DaemonHub;
use crate::domain::{RuntimeId, TaskId, WorkspaceId};
use crate::events::{Audience, Event, EventBus, Outgoing, WeakBus, RELAY_BACKLOG};
use crate::store::{NodeReceiver, NodeSender, Store};

/// Most messages written in one transaction.
const BATCH: usize = 256;
/// How long the reader waits for a notification before it reads anyway
/// (and checks whether its node is shutting down).
const WAIT: Duration = Duration::from_secs(1);

/// A message as the nodes store it.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Message {
    Event {
        kind: String,
        workspace_id: WorkspaceId,
        audience: Audience,
        data: String,
    },
    AccessChanged,
    TaskAvailable {
        runtime_id: RuntimeId,
        task_id: TaskId,
    },
}

impl Message {
    fn of(outgoing: &Outgoing) -> Message {
        match outgoing {
            Outgoing::Event(event) => Message::Event {
                kind: event.kind.to_string(),
                workspace_id: event.workspace_id,
                audience: event.audience,
                data: event.data.clone(),
            },
            Outgoing::AccessChanged => Message::AccessChanged,
            Outgoing::TaskAvailable { runtime, task } => Message::TaskAvailable {
                runtime_id: *runtime,
                task_id: *task,
            },
        }
    }
}

/// Starts relaying `bus` and `hub`'s wake-ups through `store`'s database,
/// if it is shared by nodes (PostgreSQL).
pub fn start(store: &Store, bus: &EventBus, hub: &DaemonHub) -> std::io::Result<()> {
    let Some((sender, receiver)) = store.broadcast() else {
        return Ok(());
    };
    let node = uuid::Uuid::new_v4();
    let (outgoing, queued) = mpsc::sync_channel(RELAY_BACKLOG);
    thread::Builder::new()
        .name("agenthub-relay-out".into())
        .spawn(move || send_all(node, sender, queued))?;
    let (bus_handle, hub_handle) = (bus.downgrade(), hub.clone());
    thread::Builder::new()
        .name("agenthub-relay-in".into())
        .spawn(move || receive_all(node, receiver, bus_handle, hub_handle))?;
    hub.set_relay(outgoing.clone());
    bus.set_relay(outgoing);
    Ok(())
}

/// Writes what the node publishes, in batches, until its bus is gone.
fn send_all(node: uuid::Uuid, mut sender: NodeSender, queued: mpsc::Receiver<Outgoing>) {
    while let Ok(first) = queued.recv() {
        let mut bodies = Vec::new();
        for outgoing in std::iter::once(first).chain(queued.try_iter().take(BATCH - 1)) {
            match serde_json::to_string(&Message::of(&outgoing)) {
                Ok(body) => bodies.push(body),
                Err(e) => log::error!("cannot encode an event for the other nodes: {e}"),
            }
        }
        if let Err(e) = sender.send(node, &bodies) {
            log::warn!(
                "{} event(s) did not reach the other nodes: {e}",
                bodies.len()
            );
            thread::sleep(WAIT);
        }
    }
}

/// Hands the other nodes' messages to this node's bus and daemon sockets
/// until its bus is gone.
fn receive_all(node: uuid::Uuid, mut receiver: NodeReceiver, bus: WeakBus, hub: DaemonHub) {
    while !bus.is_closed() {
        let messages = match receiver.wait(WAIT) {
            Ok(messages) => messages,
            Err(e) => {
                log::warn!("cannot read the other nodes' events: {e}");
                thread::sleep(WAIT);
                continue;
            }
        };
        for (from, body) in messages {
            if from == node {
                continue;
            }
            match serde_json::from_str::<Message>(&body) {
                Ok(Message::Event {
                    kind,
                    workspace_id,
                    audience,
                    data,
                }) => bus.deliver(Event {
                    kind: Cow::Owned(kind),
                    workspace_id,
                    audience,
                    data,
                }),
                Ok(Message::AccessChanged) => bus.access_changed(),
                Ok(Message::TaskAvailable {
                    runtime_id,
                    task_id,
                }) => hub.wake(runtime_id, task_id),
                Err(e) => log::warn!("an event from another node could not be read: {e}"),
            }
        }
    }
}
