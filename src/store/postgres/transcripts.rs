//! Task transcripts (see `store::transcripts`). A batch arrives as one
//! JSON array and is inserted by one statement over `jsonb_to_recordset`.

use postgres::Row;

use super::Client;

use crate::domain::{TaskId, Timestamp};
use crate::store::transcripts::Message;

const RETURNED: &str = "seq, type, tool, content, input::text, output, created_at";

fn message(task: TaskId, row: &Row) -> Result<Message, postgres::Error> {
    let input: Option<String> = row.try_get(4)?;
    Ok(Message {
        task_id: task,
        seq: row.try_get(0)?,
        kind: row.try_get(1)?,
        tool: row.try_get(2)?,
        content: row.try_get(3)?,
        // jsonb's own text is always JSON
        input: input.and_then(|text| serde_json::from_str(&text).ok()),
        output: row.try_get(5)?,
        created_at: row.try_get(6)?,
    })
}

pub fn insert(
    conn: &mut Client,
    task: TaskId,
    batch: &str,
    at: Timestamp,
) -> Result<Vec<Message>, postgres::Error> {
    conn.query(
        &format!(
            "INSERT INTO task_message (task_id, seq, type, tool, content, input, output, created_at)
             SELECT $1::uuid, m.seq, m.type, m.tool, m.content, m.input::jsonb, m.output,
                    $3::timestamptz
             FROM jsonb_to_recordset($2::text::jsonb)
                  AS m(seq bigint, type text, tool text, content text, input text, output text)
             ON CONFLICT (task_id, seq) DO NOTHING
             RETURNING {RETURNED}"
        ),
        &[&task, &batch, &at],
    )?
    .iter()
    .map(|row| message(task, row))
    .collect()
}

pub fn add_bytes(conn: &mut Client, task: TaskId, bytes: i64) -> Result<i64, postgres::Error> {
    conn.query_one(
        "UPDATE agent_task_queue SET transcript_bytes = transcript_bytes + $2 WHERE id = $1
         RETURNING transcript_bytes",
        &[&task, &bytes],
    )?
    .try_get(0)
}

pub fn list(
    conn: &mut Client,
    task: TaskId,
    after: i64,
    limit: i64,
) -> Result<Vec<Message>, postgres::Error> {
    conn.query(
        &format!(
            "SELECT {RETURNED} FROM task_message
             WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ),
        &[&task, &after, &limit],
    )?
    .iter()
    .map(|row| message(task, row))
    .collect()
}
