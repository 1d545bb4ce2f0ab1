-- Messages between the agenthub nodes that share this database: each node
-- writes what it publishes (events for the dashboard's streams, access
-- changes) here and NOTIFYs the others, which read the rows after the last
-- one they saw. Rows are kept a minute: long enough for a node to catch
-- up after a short pause, never a history.
CREATE TABLE node_message (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node       uuid NOT NULL,
    body       text COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX node_message_created_idx ON node_message(created_at);
