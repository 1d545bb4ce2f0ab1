-- The outbox keeps at most so many events per workspace (the sender
-- deletes the oldest beyond them): a workspace's events in order.
CREATE INDEX webhook_event_workspace_idx ON webhook_event(workspace_id, seq);
