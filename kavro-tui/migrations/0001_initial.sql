-- Kavro client history, one database per profile.
-- Times are RFC 3339 text in UTC; keys are lowercase hex.

-- People we have exchanged keys with: pinned on first use, verified after
-- `kavro trust`, changed when the relay (or an envelope) shows another key.
CREATE TABLE contacts (
    username_norm   TEXT PRIMARY KEY,           -- lowercase username
    username        TEXT NOT NULL,              -- as the relay spells it
    user_id         INTEGER NOT NULL,
    pinned_key      TEXT NOT NULL,              -- the trusted identity key
    state           TEXT NOT NULL CHECK (state IN ('pinned', 'verified', 'changed')),
    changed_key     TEXT,                       -- the new, untrusted key (state = 'changed')
    changed_user_id INTEGER,                    -- and the account it was seen for
    first_seen      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    CHECK ((state = 'changed') = (changed_key IS NOT NULL))
);

-- Every message received or sent. A message is stored once: the dedupe key
-- is the envelope's message id, or for messages without one (legacy,
-- undecryptable) a hash of their ciphertext.
CREATE TABLE messages (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    direction        TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    dedupe_key       TEXT NOT NULL,
    msg_uuid         TEXT,                      -- the envelope's message id
    relay_id         INTEGER,                   -- the relay's message id
    peer             TEXT,                      -- the other side's username, when known
    peer_norm        TEXT,                      -- lowercase of peer
    peer_user_id     INTEGER,                   -- the other side's account, when known
    sent_at          TEXT NOT NULL,             -- sender's clock (envelope) or the relay's
    received_at      TEXT NOT NULL,             -- stored here (in) / queued here (out)
    text             TEXT,                      -- NULL when it could not be read
    verified         INTEGER NOT NULL CHECK (verified IN (0, 1)),
    state            TEXT NOT NULL CHECK (
        (direction = 'out' AND state IN ('pending', 'stored', 'delivered', 'failed')) OR
        (direction = 'in' AND state IN ('ok', 'unverified', 'key_mismatch', 'undecryptable'))),
    error            TEXT,                      -- why it is not 'ok', or why sending failed
    sender_key       TEXT,                      -- the envelope's sender key (in)
    ciphertext       TEXT,                      -- kept for incoming messages that are not 'ok'
    ephemeral_pubkey TEXT,
    delivered_at     TEXT,                      -- out: when the recipient acknowledged
    UNIQUE (direction, dedupe_key)
);
CREATE INDEX messages_by_peer ON messages (peer_norm, id);
CREATE INDEX messages_by_peer_id ON messages (peer_user_id, id);

-- Sends not yet confirmed by the relay, retried with the same client_msg_id
-- (the relay stores a retried id once).
CREATE TABLE outbox (
    message_id       INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    client_msg_id    TEXT NOT NULL UNIQUE,
    recipient_id     INTEGER NOT NULL,
    ciphertext       TEXT NOT NULL,
    ephemeral_pubkey TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    created_at       TEXT NOT NULL
);
