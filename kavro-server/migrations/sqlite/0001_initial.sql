-- Kavro relay schema, SQLite backend. Times are Unix milliseconds (INTEGER),
-- so that comparisons in SQL are numeric.

CREATE TABLE users (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    username            TEXT    NOT NULL,
    username_normalized TEXT    NOT NULL UNIQUE,
    password_hash       TEXT    NOT NULL,
    created_at          INTEGER NOT NULL
);

CREATE TABLE devices (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    identity_pubkey TEXT    NOT NULL,
    device_name     BLOB,               -- Fernet token, or NULL
    created_at      INTEGER NOT NULL,
    UNIQUE (user_id, identity_pubkey)
);

-- One row per message. The ciphertext is dropped on ack or expiry; the row
-- then stays as the sender's delivery receipt until the retention sweep.
CREATE TABLE messages (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    sender_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    recipient_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    ciphertext       BLOB,
    ephemeral_pubkey TEXT    NOT NULL,
    metadata         BLOB,              -- Fernet token of the JSON, or NULL
    client_msg_id    TEXT,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    delivered_at     INTEGER
);

-- The inbox: undelivered messages of one recipient, by id.
CREATE INDEX messages_pending ON messages (recipient_id, id) WHERE delivered_at IS NULL;
-- Idempotent sends.
CREATE UNIQUE INDEX messages_client_msg_id ON messages (sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
-- The retention sweep.
CREATE INDEX messages_expiry ON messages (expires_at) WHERE delivered_at IS NULL;
CREATE INDEX messages_delivered ON messages (delivered_at) WHERE delivered_at IS NOT NULL;
