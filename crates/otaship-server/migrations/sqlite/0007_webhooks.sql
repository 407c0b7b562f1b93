-- Webhooks: where to announce new builds and expiring profiles, and every delivery with its
-- attempts. A delivery is a row from the moment its event happens until it is delivered or
-- given up, so that any instance can send it and a restart loses nothing.

CREATE TABLE webhooks (
    id            TEXT PRIMARY KEY NOT NULL,
    -- Where deliveries are POSTed: an http:// or https:// URL.
    url           TEXT NOT NULL,
    -- `json` (otaship's event document) or `slack` (`{"text": ...}` for Slack-compatible hooks).
    kind          TEXT NOT NULL,
    -- The HMAC-SHA256 key of X-Otaship-Signature. Kept in clear: the server signs with it.
    secret        TEXT NOT NULL,
    -- The events it receives, comma-separated: build.uploaded, profile.expiring.
    events        TEXT NOT NULL,
    -- Only this app's events, when set.
    bundle_id     TEXT,
    -- profile.expiring fires when a profile expires within this many days.
    expiry_days   INTEGER NOT NULL DEFAULT 7,
    -- A paused webhook receives no new events.
    enabled       INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY NOT NULL,
    webhook_id       TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    -- build.uploaded, profile.expiring or ping.
    event            TEXT NOT NULL,
    -- What makes an event happen once per webhook (`profile.expiring:<build id>`).
    dedupe_key       TEXT NOT NULL,
    -- The event as JSON; the body is made from it at each attempt.
    payload          TEXT NOT NULL,
    -- pending, delivered or failed.
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- When a pending delivery is next due; while an instance sends it, the end of its lease.
    next_attempt_at  TEXT NOT NULL,
    -- The HTTP status of the last attempt, when the endpoint answered.
    last_status      INTEGER,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    delivered_at     TEXT,
    UNIQUE (webhook_id, dedupe_key)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (created_at);
