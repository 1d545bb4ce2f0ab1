//! The in-process event bus: handlers and background jobs publish workspace
//! events after their transaction commits; subscribers (the event stream)
//! each get a bounded buffer, so a slow subscriber loses old events rather
//! than blocking a publisher.

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};

use crate::domain::Id;

/// Events buffered per subscriber before the oldest are dropped.
const BUFFER: usize = 1024;

pub const DAEMON_REGISTER: &str = "daemon:register";
pub const AGENT_STATUS: &str = "agent:status";

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `daemon:register`, `task:…`, `agent:status`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub workspace_id: Id,
    pub payload: Value,
}

#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
    /// Set when the server shuts down, so endless event streams end and
    /// do not hold the shutdown open.
    closing: watch::Sender<bool>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl EventBus {
    pub fn new() -> EventBus {
        let (sender, _) = broadcast::channel(BUFFER);
        let (closing, _) = watch::channel(false);
        EventBus { sender, closing }
    }

    /// Publishes to every current subscriber; never blocks, and having no
    /// subscriber is not an error.
    pub fn publish(&self, kind: &'static str, workspace_id: Id, payload: Value) {
        let _ = self.sender.send(Event {
            kind,
            workspace_id,
            payload,
        });
    }

    /// `agent:status {agent_id, status}`.
    pub fn agent_status(&self, workspace_id: Id, agent_id: Id, status: &str) {
        self.publish(
            AGENT_STATUS,
            workspace_id,
            json!({"agent_id": agent_id, "status": status}),
        );
    }

    /// `task:<what> {task_id, agent_id}`.
    pub fn task(&self, kind: &'static str, workspace_id: Id, task_id: Id, agent_id: Option<Id>) {
        self.publish(
            kind,
            workspace_id,
            json!({"task_id": task_id, "agent_id": agent_id}),
        );
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    /// Ends every event stream (at shutdown).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Becomes `true` when the streams should end.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }
}
