//! Task transcripts (`task_message`): the messages a daemon reports while
//! its agent runs, in `seq` order, already redacted by the API. The first
//! report of a seq is kept and a repeat changes nothing, so a daemon may
//! send a batch again after a lost reply.

use serde::Serialize;
use serde_json::Value;

use crate::domain::{TaskId, Timestamp};

use super::{dispatch, Conn, Result};

/// A message on its way in.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub seq: i64,
    pub kind: String,
    pub tool: Option<String>,
    pub content: Option<String>,
    pub input: Option<Value>,
    pub output: Option<String>,
}

/// A stored message, as the API shows it (absent fields left out).
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub task_id: TaskId,
    pub seq: i64,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    pub created_at: Timestamp,
}

impl Message {
    /// The bytes of text it stores: its type, tool, content, output and
    /// the JSON text of its input (what a transcript's cap counts).
    fn bytes(&self) -> i64 {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let input = self.input.as_ref().map_or(0, |v| v.to_string().len());
        (self.kind.len() + text(&self.tool) + text(&self.content) + input + text(&self.output))
            as i64
    }
}

/// The messages of a batch as one JSON array (what the engines insert in
/// one statement): `input` as its JSON text.
fn batch_json(messages: &[NewMessage]) -> String {
    let rows: Vec<Value> = messages
        .iter()
        .map(|m| {
            serde_json::json!({
                "seq": m.seq,
                "type": m.kind,
                "tool": m.tool,
                "content": m.content,
                "input": m.input.as_ref().map(Value::to_string),
                "output": m.output,
            })
        })
        .collect();
    Value::Array(rows).to_string()
}

/// What a batch stored: the messages new to the task, in seq order, and
/// the task's transcript bytes now.
#[derive(Debug)]
pub struct Appended {
    pub messages: Vec<Message>,
    pub total_bytes: i64,
}

/// Stores the messages of `task` whose seq it does not have yet, in one
/// statement, and adds their bytes to the task's. Call it in a write.
pub fn append(conn: &Conn<'_>, task: TaskId, messages: &[NewMessage]) -> Result<Appended> {
    let mut stored = insert(conn, task, &batch_json(messages), Timestamp::now())?;
    stored.sort_by_key(|m| m.seq);
    let added: i64 = stored.iter().map(Message::bytes).sum();
    let total_bytes = add_bytes(conn, task, added)?;
    Ok(Appended {
        messages: stored,
        total_bytes,
    })
}

fn insert(conn: &Conn<'_>, task: TaskId, batch: &str, at: Timestamp) -> Result<Vec<Message>> {
    dispatch!(conn, transcripts::insert(task, batch, at))
}

fn add_bytes(conn: &Conn<'_>, task: TaskId, bytes: i64) -> Result<i64> {
    dispatch!(conn, transcripts::add_bytes(task, bytes))
}

/// Up to `limit` messages of `task` with a seq above `after` (all when
/// `None`), in seq order.
pub fn list(
    conn: &Conn<'_>,
    task: TaskId,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<Message>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    dispatch!(conn, transcripts::list(task, after.unwrap_or(-1), limit))
}
