-- Token scopes, named accounts for the web UI and their sessions, and failed sign-ins for rate
-- limiting. Only new tables and columns: an instance of the previous release keeps working
-- beside migrated ones (it treats every token as it always did and ignores the new tables).

-- `admin` (everything) or `upload` (upload builds only, for CI). Tokens made before scopes
-- existed could do everything, so they stay admin tokens.
ALTER TABLE tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin';

-- People who sign in to the web UI with a username and a password.
CREATE TABLE accounts (
    id                   TEXT PRIMARY KEY NOT NULL,
    -- As typed at creation (ASCII letters, digits and . _ @ -); unique whatever the case.
    username             TEXT NOT NULL,
    -- Argon2id, as a PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
    password_hash        TEXT NOT NULL,
    -- `admin` (everything) or `uploader` (upload and browse; no deleting, no /admin pages).
    role                 TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    password_changed_at  TEXT NOT NULL,
    last_sign_in_at      TEXT
);
-- Usernames are ASCII, so lower() means the same on SQLite and PostgreSQL.
CREATE UNIQUE INDEX accounts_by_username ON accounts (lower(username));

-- Web sessions opened with a password. A table of their own rather than a nullable column on
-- `sessions`: making `sessions.token_id` nullable would rebuild that table on SQLite, and an
-- instance of the previous release, which reads `sessions` joined with `tokens`, must not take
-- an account's session for a token's. Deleting an account deletes its sessions.
CREATE TABLE account_sessions (
    -- SHA-256 of the cookie value (256 random bits).
    id_hash     TEXT PRIMARY KEY NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- Synchronizer token every form and upload of this session must carry.
    csrf_token  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX account_sessions_by_expiry ON account_sessions (expires_at);
CREATE INDEX account_sessions_by_account ON account_sessions (account_id);

-- Failed attempts (wrong passwords, wrong tokens at sign-in), shared by every instance.
CREATE TABLE auth_failures (
    -- SHA-256 of what was limited (`signin-ip:203.0.113.9`, `signin-user:alice`, ...): a
    -- username field sometimes holds a password typed in the wrong box.
    key  TEXT NOT NULL,
    at   TEXT NOT NULL
);
CREATE INDEX auth_failures_by_key ON auth_failures (key, at);
-- For pruning old rows.
CREATE INDEX auth_failures_by_time ON auth_failures (at);
