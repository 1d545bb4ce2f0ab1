-- Whose machine it is: a runtime is private to its owner (only they bind
-- agents to it: its CLI login and files are theirs) until the owner makes
-- it bindable by the workspace's owners and admins too. Every runtime
-- registered so far starts private, as a daemon's new ones do.
ALTER TABLE agent_runtime ADD COLUMN visibility TEXT NOT NULL DEFAULT 'private'
    CHECK (visibility IN ('workspace', 'private'));
