-- Retention rules: per app, for one channel or (channel '') for every channel of the app. A
-- channel's own rule replaces the app-wide one for that channel. A build goes when it is beyond
-- the newest keep_last of its channel, or older than max_age_days; the newest build of a
-- channel always stays.

CREATE TABLE retention_rules (
    bundle_id     TEXT NOT NULL,
    -- A channel name, or '' for every channel of the app without a rule of its own.
    channel       TEXT NOT NULL,
    -- NULL: no limit on the count; else at least 1.
    keep_last     INTEGER CHECK (keep_last IS NULL OR keep_last >= 1),
    -- NULL: no limit on the age; else at least 1.
    max_age_days  INTEGER CHECK (max_age_days IS NULL OR max_age_days >= 1),
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (bundle_id, channel),
    CHECK (keep_last IS NOT NULL OR max_age_days IS NOT NULL)
);

-- Retention looks for the builds of one (app, channel) newer than a given one.
CREATE INDEX builds_by_channel ON builds (bundle_id, channel, created_at DESC, id DESC);
