-- Trust in v2 accounts (src/v2/trust.rs, src/mls/pins.rs): the root device
-- key of each account, pinned the first time this installation saw it, and
-- whether the user compared its safety number; and every device seen in the
-- account's chain of device links (to tell new devices apart).
CREATE TABLE v2_pins (
    -- lowercase username
    username  TEXT PRIMARY KEY NOT NULL,
    user_id   INTEGER NOT NULL,
    root_key  BLOB NOT NULL,
    verified  INTEGER NOT NULL DEFAULT 0,
    pinned_at TEXT NOT NULL
);

CREATE TABLE v2_known_devices (
    username      TEXT NOT NULL,
    device_id     INTEGER NOT NULL,
    signature_key BLOB NOT NULL,
    PRIMARY KEY (username, device_id)
);
