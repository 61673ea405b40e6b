-- Kavro v2 (MLS) local state: openmls' key-value storage and Kavro's own
-- tables, always written in one transaction (src/mls/mod.rs).

-- openmls' storage, as its MemoryStorage keys and values (opaque bytes).
CREATE TABLE mls_kv (
    key   BLOB PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- This installation's device (one row).
CREATE TABLE v2_device (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    user_id       INTEGER NOT NULL,
    username      TEXT NOT NULL,
    device_id     INTEGER NOT NULL,
    signature_key BLOB NOT NULL,
    -- Every queue entry up to here is applied locally (acknowledged or not).
    queue_after   INTEGER NOT NULL DEFAULT 0
);

-- Conversations: a 1:1 chat has `peer`, a group has `name`.
CREATE TABLE v2_conversations (
    group_id   BLOB PRIMARY KEY NOT NULL,
    name       TEXT,
    peer       TEXT,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX v2_conversations_name ON v2_conversations (name) WHERE name IS NOT NULL;

-- Messages and system lines of every conversation, in local order.
CREATE TABLE v2_messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id      BLOB NOT NULL,
    epoch         INTEGER NOT NULL,
    -- 'text' or 'system'
    kind          TEXT NOT NULL,
    sender        TEXT NOT NULL,
    outgoing      INTEGER NOT NULL,
    body          TEXT NOT NULL,
    message_id    TEXT,
    at            TEXT NOT NULL
);
CREATE INDEX v2_messages_group ON v2_messages (group_id, id);

-- Commits and application messages made locally but not yet accepted by the
-- relay, in order. Re-posted with the same client_msg_id after a crash (the
-- relay answers a repeat with the first answer), so a commit the relay took
-- is always merged and a message is never encrypted twice.
CREATE TABLE v2_outbox (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    client_msg_id TEXT NOT NULL UNIQUE,
    group_id      BLOB NOT NULL,
    -- 'commit' or 'message'
    kind          TEXT NOT NULL,
    -- the PostCommit or PostGroupMessage body, as JSON
    request       TEXT NOT NULL,
    -- the history line written when the relay accepts it
    line          TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
