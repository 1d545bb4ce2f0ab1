//! Task transcripts (see `store::transcripts`). A batch arrives as one
//! JSON array and is inserted by one statement over `json_each`.

use rusqlite::{params, Connection, Row};

use crate::domain::{TaskId, Timestamp};
use crate::store::transcripts::Message;

fn message(task: TaskId) -> impl Fn(&Row<'_>) -> rusqlite::Result<Message> {
    move |row| {
        let input: Option<String> = row.get(4)?;
        Ok(Message {
            task_id: task,
            seq: row.get(0)?,
            kind: row.get(1)?,
            tool: row.get(2)?,
            content: row.get(3)?,
            input: input
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        4,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?,
            output: row.get(5)?,
            created_at: row.get(6)?,
        })
    }
}

pub fn insert(
    conn: &Connection,
    task: TaskId,
    batch: &str,
    at: Timestamp,
) -> rusqlite::Result<Vec<Message>> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO task_message (task_id, seq, type, tool, content, input, output, created_at)
         SELECT ?1, m.value ->> 'seq', m.value ->> 'type', m.value ->> 'tool',
                m.value ->> 'content', m.value ->> 'input', m.value ->> 'output', ?3
         FROM json_each(?2) AS m WHERE true
         ON CONFLICT (task_id, seq) DO NOTHING
         RETURNING seq, type, tool, content, input, output, created_at",
    )?;
    let rows = stmt.query_map(params![task, batch, at], message(task))?;
    rows.collect()
}

pub fn add_bytes(conn: &Connection, task: TaskId, bytes: i64) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "UPDATE agent_task_queue SET transcript_bytes = transcript_bytes + ?2 WHERE id = ?1
         RETURNING transcript_bytes",
    )?
    .query_row(params![task, bytes], |r| r.get(0))
}

pub fn list(
    conn: &Connection,
    task: TaskId,
    after: i64,
    limit: i64,
) -> rusqlite::Result<Vec<Message>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, type, tool, content, input, output, created_at FROM task_message
         WHERE task_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![task, after, limit], message(task))?;
    rows.collect()
}
