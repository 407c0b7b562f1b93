-- Several instances: parts of an upload as objects in object storage, and secrets every
-- instance must share (the local CA) in the database.

-- The object a part is stored in, under object storage; NULL on local disk, where the parts of
-- an upload share one file.
ALTER TABLE upload_parts ADD COLUMN object TEXT;

CREATE TABLE secrets (
    name        TEXT PRIMARY KEY NOT NULL,
    value       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
