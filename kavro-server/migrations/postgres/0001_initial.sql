-- Kavro relay schema, PostgreSQL backend.
--
-- Every hot query on `messages` is keyed by recipient_id (inbox, ack, the
-- pending quota), so the table can be partitioned or distributed (Citus) on
-- it; see docs/OPERATIONS.md.

CREATE TABLE users (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username            TEXT        NOT NULL,
    username_normalized TEXT        NOT NULL UNIQUE,
    password_hash       TEXT        NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL
);

CREATE TABLE devices (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    identity_pubkey TEXT        NOT NULL,
    device_name     BYTEA,
    created_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (user_id, identity_pubkey)
);

CREATE TABLE messages (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sender_id        BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    recipient_id     BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    ciphertext       BYTEA,
    ephemeral_pubkey TEXT        NOT NULL,
    metadata         BYTEA,
    client_msg_id    UUID,
    created_at       TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL,
    delivered_at     TIMESTAMPTZ
);

CREATE INDEX messages_pending ON messages (recipient_id, id) WHERE delivered_at IS NULL;
CREATE UNIQUE INDEX messages_client_msg_id ON messages (sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
CREATE INDEX messages_expiry ON messages (expires_at) WHERE delivered_at IS NULL;
CREATE INDEX messages_delivered ON messages (delivered_at) WHERE delivered_at IS NOT NULL;
