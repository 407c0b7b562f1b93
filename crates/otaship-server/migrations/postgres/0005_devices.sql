-- Devices enrolled through Apple's Profile Service, and the one-time challenges of enrollment.

CREATE TABLE devices (
    id             TEXT PRIMARY KEY NOT NULL,
    -- Canonical spelling: 40 lower-case hex digits, or the 8-16 form in upper case.
    udid           TEXT NOT NULL UNIQUE,
    -- Given by an uploader on the devices page; NULL shows device_name.
    name           TEXT,
    -- DEVICE_NAME, as the device reported it.
    device_name    TEXT,
    -- PRODUCT, the model identifier (iPhone15,2).
    product        TEXT,
    -- VERSION, the OS build (22A3354).
    os_build       TEXT,
    -- The iOS version Safari reported on this device, when it agrees with os_build.
    os_version     TEXT,
    serial         TEXT,
    -- Whether the last reply was signed by a certificate Apple's device CA issued.
    verified       BOOLEAN NOT NULL,
    first_seen_at  TEXT NOT NULL,
    last_seen_at   TEXT NOT NULL
);

CREATE TABLE device_enrollments (
    -- SHA-256 of the challenge the enrollment profile asks the device to echo.
    challenge_hash  TEXT PRIMARY KEY NOT NULL,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    -- When the device replied; a challenge is taken once.
    used_at         TEXT,
    device_id       TEXT REFERENCES devices (id) ON DELETE CASCADE,
    -- SHA-256 of the token in the result page's URL.
    result_hash     TEXT UNIQUE,
    -- The install page (its token) that sent the browser to enroll, to lead it back.
    return_token    TEXT
);
CREATE INDEX device_enrollments_by_expiry ON device_enrollments (expires_at);
