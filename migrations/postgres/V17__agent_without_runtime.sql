-- An agent may exist without a runtime: unbinding a runtime's agents to
-- delete it keeps them, their settings and their history. runtime_id NULL
-- is not claimable by anyone until the agent is bound again.
ALTER TABLE agent ALTER COLUMN runtime_id DROP NOT NULL;
