-- Share links (with optional password, expiry and install limit), the stable "latest in
-- channel" pages, and install analytics.

CREATE TABLE share_links (
    id            TEXT PRIMARY KEY NOT NULL,
    -- The unguessable path component of /s/{token} (128 random bits); shown again in lists.
    token         TEXT NOT NULL UNIQUE,
    -- A link to one build; NULL for a channel link. No foreign key: a link outlives its build
    -- and then says the build was deleted (410) instead of vanishing (404).
    build_id      TEXT,
    -- The app (both kinds) and, for a channel link, the channel whose newest build it serves.
    bundle_id     TEXT NOT NULL,
    channel       TEXT,
    label         TEXT,
    -- argon2id PHC string; NULL when the link needs no password.
    password_hash TEXT,
    expires_at    TEXT,
    max_installs  BIGINT,
    -- Manifest fetches through the link: each is one install attempt by the iOS installer.
    installs      BIGINT NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);
CREATE INDEX share_links_by_build ON share_links (build_id);
CREATE INDEX share_links_by_app ON share_links (bundle_id, channel);

-- The stable page of each (app, channel), created the first time it is shown.
CREATE TABLE channel_pages (
    bundle_id   TEXT NOT NULL,
    channel     TEXT NOT NULL,
    token       TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (bundle_id, channel)
);

-- What happened to builds: page views, manifest fetches, downloads started and completed.
CREATE TABLE install_events (
    id            TEXT PRIMARY KEY NOT NULL,
    build_id      TEXT NOT NULL,
    link_id       TEXT,
    -- page-view | manifest | download-started | download-completed
    kind          TEXT NOT NULL,
    at            TEXT NOT NULL,
    -- Model identifier (iPhone15,2) from the installer's user agent, or iPhone/iPad from a
    -- browser's.
    device_model  TEXT,
    os_version    TEXT
);
CREATE INDEX install_events_by_build ON install_events (build_id, kind);
CREATE INDEX install_events_by_link ON install_events (link_id, kind);
