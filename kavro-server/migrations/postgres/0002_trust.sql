-- Accounts that can be closed, keys that can be retired, sessions that can be
-- ended everywhere, and O(1) pending-message quotas.

-- Every token carries the generation of its account; logging out everywhere,
-- a password change and account deletion raise it, and tokens of an older
-- generation are refused. `tokens_revoked_at` is when it was last raised.
ALTER TABLE users ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN tokens_revoked_at TIMESTAMPTZ;
-- A deleted account stays as a row without a password while its name is
-- reserved and while messages it sent still exist.
ALTER TABLE users ADD COLUMN deleted_at TIMESTAMPTZ;
CREATE INDEX users_deleted ON users (deleted_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX users_tokens_revoked ON users (tokens_revoked_at)
    WHERE tokens_revoked_at IS NOT NULL;

-- A retired key is no longer served and cannot be published again.
ALTER TABLE devices ADD COLUMN retired_at TIMESTAMPTZ;

-- Pending (undelivered, not yet expired by the sweep) messages per recipient
-- and per (recipient, sender), kept in the same transaction as every insert,
-- ack, expiry and deletion, so a send checks its quota without counting rows.
-- A message counts while delivered_at IS NULL AND ciphertext IS NOT NULL.
-- Every account has its inbox row from registration until deletion; the row
-- lock on it orders the sends, acks and expiries of one recipient.
CREATE TABLE inbox_counts (
    recipient_id BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    pending      BIGINT NOT NULL DEFAULT 0 CHECK (pending >= 0)
);

CREATE TABLE sender_counts (
    recipient_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    sender_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    pending      BIGINT NOT NULL DEFAULT 0 CHECK (pending >= 0),
    PRIMARY KEY (recipient_id, sender_id)
);

INSERT INTO inbox_counts (recipient_id, pending)
SELECT u.id, count(m.id) FROM users u
LEFT JOIN messages m ON m.recipient_id = u.id AND m.delivered_at IS NULL
                     AND m.ciphertext IS NOT NULL
GROUP BY u.id;

INSERT INTO sender_counts (recipient_id, sender_id, pending)
SELECT recipient_id, sender_id, count(*) FROM messages
WHERE delivered_at IS NULL AND ciphertext IS NOT NULL
GROUP BY recipient_id, sender_id;
