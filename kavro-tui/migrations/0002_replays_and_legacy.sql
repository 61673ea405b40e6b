-- Replays are recognised by (sender key, message id) and survive a new
-- history database: see kavro-tui/src/history/replay.rs.

-- Envelopes were de-duplicated on their message id alone: now on the
-- sender's key and the id (a forgery under another key cannot shadow a
-- real message). Legacy and undecryptable rows keep their 'sha256:' key
-- until History::open rehashes them with the ephemeral key normalised.
UPDATE messages SET dedupe_key = 'env:' || sender_key || ':' || msg_uuid
WHERE direction = 'in' AND msg_uuid IS NOT NULL AND sender_key IS NOT NULL;

-- The identity this history belongs to, and since when it has recorded
-- every message to it: envelopes signed earlier are possible replays.
CREATE TABLE replay_horizon (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    identity_key TEXT NOT NULL,             -- our public key, hex
    since        TEXT NOT NULL              -- RFC 3339, UTC
);

-- Legacy (unauthenticated) messages are marked as such, apart from other
-- unverified ones; a refused one keeps its ciphertext and no text.
ALTER TABLE messages ADD COLUMN legacy INTEGER NOT NULL DEFAULT 0 CHECK (legacy IN (0, 1));
UPDATE messages SET legacy = 1
WHERE direction = 'in' AND state = 'unverified' AND msg_uuid IS NULL AND sender_key IS NULL;

-- Whether legacy messages are shown or refused: per contact (lowercase
-- username), with '*' the default for everyone else. No row: allow.
CREATE TABLE legacy_policy (
    username_norm TEXT PRIMARY KEY,
    policy        TEXT NOT NULL CHECK (policy IN ('allow', 'refuse'))
);
