-- Channels and CI metadata on builds; resumable uploads.

-- The channel a build was pushed to (`beta`, `qa`, ...); `default` when none was named.
ALTER TABLE builds ADD COLUMN channel TEXT NOT NULL DEFAULT 'default';
-- Free-form key/value pairs from the uploader (git branch, commit, CI run URL), as a JSON object.
ALTER TABLE builds ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
-- Uploading the same file again returns the existing build; this finds it.
CREATE INDEX builds_by_sha256 ON builds (sha256);

-- A resumable upload in progress. Its bytes live in one file under the data directory
-- (uploads/<id>.part), written at each part's offset.
CREATE TABLE uploads (
    id          TEXT PRIMARY KEY NOT NULL,
    file_name   TEXT NOT NULL,
    size        INTEGER NOT NULL,
    -- SHA-256 the whole file must have, checked at completion.
    sha256      TEXT NOT NULL,
    part_size   INTEGER NOT NULL,
    notes       TEXT,
    channel     TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    -- `open` while parts arrive; `completing` while one request assembles and ingests it.
    state       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    -- Pushed forward by every part received; past it the upload is abandoned and deleted.
    expires_at  TEXT NOT NULL
);
CREATE INDEX uploads_by_content ON uploads (sha256, size);
CREATE INDEX uploads_by_expiry ON uploads (expires_at);

CREATE TABLE upload_parts (
    upload_id    TEXT NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    -- 1-based, as in S3.
    number       INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    PRIMARY KEY (upload_id, number)
);
