-- Apps are identified by their bundle id; builds belong to an app.
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
    size           INTEGER NOT NULL,
    sha256         TEXT NOT NULL,
    notes          TEXT,
    created_at     TEXT NOT NULL,
    has_icon       INTEGER NOT NULL,
    -- The full inspection report (otaship-ipa's IpaReport) as JSON.
    report         TEXT NOT NULL
);
CREATE INDEX builds_by_app ON builds (bundle_id, created_at DESC, id DESC);

CREATE TABLE tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    -- SHA-256 of the token; tokens carry 256 random bits, so a fast hash is enough.
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT
);
