-- The whole schema on PostgreSQL, column for column as the SQLite migrations leave it (so that
-- one set of statements serves both). Timestamps are RFC 3339 UTC text with milliseconds, whose
-- text order is time order; integers are BIGINT, which is what the code reads.

CREATE TABLE apps (
    bundle_id   TEXT PRIMARY KEY NOT NULL,
    name        TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE builds (
    id             TEXT PRIMARY KEY NOT NULL,
    -- The unguessable capability in install, manifest, icon and download URLs (128 random bits).
    install_token  TEXT NOT NULL UNIQUE,
    bundle_id      TEXT NOT NULL REFERENCES apps (bundle_id),
    name           TEXT,
    version        TEXT,
    build          TEXT,
    size           BIGINT NOT NULL,
    sha256         TEXT NOT NULL,
    notes          TEXT,
    created_at     TEXT NOT NULL,
    has_icon       BOOLEAN NOT NULL,
    -- The full inspection report (otaship-ipa's IpaReport) as JSON.
    report         TEXT NOT NULL,
    channel        TEXT NOT NULL DEFAULT 'default',
    metadata       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX builds_by_app ON builds (bundle_id, created_at DESC, id DESC);
CREATE INDEX builds_by_sha256 ON builds (sha256);

CREATE TABLE tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    -- SHA-256 of the token; tokens carry 256 random bits, so a fast hash is enough.
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT
);

CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY NOT NULL,
    token_id    TEXT NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    csrf_token  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE uploads (
    id          TEXT PRIMARY KEY NOT NULL,
    file_name   TEXT NOT NULL,
    size        BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    part_size   BIGINT NOT NULL,
    notes       TEXT,
    channel     TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    -- `open` while parts arrive; `completing` while one request assembles and ingests it.
    state       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    -- Open: pushed forward by every part; completing: the completing instance's lease.
    expires_at  TEXT NOT NULL
);
CREATE INDEX uploads_by_content ON uploads (sha256, size);
CREATE INDEX uploads_by_expiry ON uploads (expires_at);

CREATE TABLE upload_parts (
    upload_id    TEXT NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    number       BIGINT NOT NULL,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    -- The part's object in object storage (each attempt its own key, never overwritten).
    object       TEXT,
    PRIMARY KEY (upload_id, number)
);

CREATE TABLE secrets (
    name        TEXT PRIMARY KEY NOT NULL,
    value       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
