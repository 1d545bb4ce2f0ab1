-- Membership by invitation: an owner or admin invites an email address, and
-- the user with that address (now or later) accepts or declines. Rows are
-- kept after they are answered, as a record of who let whom in.
--
-- `email` is compared case-insensitively, like "user".email. A pending
-- invitation past expires_at can no longer be accepted; inviting the same
-- address again refreshes that row instead of adding one.

CREATE TABLE invitation (
    id           TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    workspace_id TEXT NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    email        TEXT NOT NULL COLLATE NOCASE CHECK (length(email) > 0),
    role         TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    status       TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'accepted', 'declined', 'revoked')),
    -- the inviter; the invitation stays valid if that user goes away
    invited_by   TEXT REFERENCES "user"(id) ON DELETE SET NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL CHECK (expires_at > created_at),
    -- when it was accepted, declined or revoked
    answered_at  TEXT,
    CHECK ((status = 'pending') = (answered_at IS NULL))
) STRICT;

-- one open invitation per (workspace, address)
CREATE UNIQUE INDEX invitation_pending_idx ON invitation(workspace_id, email)
    WHERE status = 'pending';
-- "my invitations" looks pending rows up by address
CREATE INDEX invitation_pending_email_idx ON invitation(email)
    WHERE status = 'pending';
