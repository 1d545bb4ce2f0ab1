-- Task transcripts: what an agent said and did while it ran, as its daemon
-- reports it (`POST /api/daemon/tasks/{id}/messages`), secrets already
-- redacted. A message is its task's `seq`-th: the first report of a seq
-- is kept, a repeat changes nothing. `input` is a tool call's arguments
-- (a JSON object). transcript_bytes is the text stored for the task, held
-- under the cap the API enforces.
CREATE TABLE task_message (
    task_id    uuid NOT NULL REFERENCES agent_task_queue(id) ON DELETE CASCADE,
    seq        bigint NOT NULL CHECK (seq >= 0),
    type       text COLLATE "C" NOT NULL CHECK (length(type) BETWEEN 1 AND 64),
    tool       text COLLATE "C",
    content    text COLLATE "C",
    input      jsonb,
    output     text COLLATE "C",
    created_at timestamptz NOT NULL,
    PRIMARY KEY (task_id, seq)
);

ALTER TABLE agent_task_queue
    ADD COLUMN transcript_bytes bigint NOT NULL DEFAULT 0 CHECK (transcript_bytes >= 0);
