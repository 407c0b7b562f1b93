-- Web UI sign-ins. A session belongs to the API token it was opened with, so revoking the token
-- ends its sessions.
CREATE TABLE sessions (
    -- SHA-256 of the cookie value (256 random bits).
    id_hash     TEXT PRIMARY KEY NOT NULL,
    token_id    TEXT NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    -- Synchronizer token every form and upload of this session must carry.
    csrf_token  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
