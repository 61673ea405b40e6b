-- Attachments of v1 conversations (issue #14): a file whose key came in (or
-- went out in) a v1 envelope. A received one is recorded in the transaction
-- that stores its message (only when the envelope verified), then
-- downloaded and saved, or marked failed with the reason; a sent one is
-- recorded with its queued message. `file` is the FileRef as JSON: it holds
-- the file key, like `messages.text` holds the text (this database is 0600).
CREATE TABLE attachments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    peer        TEXT NOT NULL,              -- the sender (in) or recipient (out)
    outgoing    INTEGER NOT NULL CHECK (outgoing IN (0, 1)),
    file        TEXT NOT NULL,
    caption     TEXT,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'saved', 'failed', 'sent')),
    saved_path  TEXT,
    error       TEXT,
    at          TEXT NOT NULL               -- RFC 3339, UTC
);
CREATE INDEX attachments_by_state ON attachments (state, id);
