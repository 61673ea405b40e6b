-- What a short command (`kavro send`) would otherwise ask the relay every
-- time (src/mls/session_cache.rs): the device's session token (1 h) with its
-- expiry, and when the device last counted its key packages on the relay.
-- The token is a secret of the same file that holds every group's epoch
-- secrets (0600); logout forgets it.
CREATE TABLE v2_session_cache (
    id                      INTEGER PRIMARY KEY CHECK (id = 1),
    -- the device the token was issued for (used only if it is still this one)
    device_id               INTEGER,
    device_token            TEXT,
    device_token_expires_at TEXT,
    key_packages_counted_at TEXT
);
