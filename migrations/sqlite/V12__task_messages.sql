-- Task transcripts: what an agent said and did while it ran, as its daemon
-- reports it (`POST /api/daemon/tasks/{id}/messages`), secrets already
-- redacted. A message is its task's `seq`-th: the first report of a seq
-- is kept, a repeat changes nothing. `input` is a tool call's arguments
-- (a JSON object). transcript_bytes is the text stored for the task, held
-- under the cap the API enforces.
CREATE TABLE task_message (
    task_id    TEXT NOT NULL REFERENCES agent_task_queue(id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL CHECK (seq >= 0),
    type       TEXT NOT NULL CHECK (length(type) BETWEEN 1 AND 64),
    tool       TEXT,
    content    TEXT,
    input      TEXT CHECK (input IS NULL OR json_valid(input)),
    output     TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
) STRICT;

ALTER TABLE agent_task_queue
    ADD COLUMN transcript_bytes INTEGER NOT NULL DEFAULT 0 CHECK (transcript_bytes >= 0);
