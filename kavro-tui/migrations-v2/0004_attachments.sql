-- Attachments (issue #14, src/mls/attachments.rs): every file received (to be
-- downloaded, then saved or failed) and every file sent. `file` is the
-- end-to-end FileRef as JSON: it holds the file's key, like the group secrets
-- this 0600 file holds.
CREATE TABLE v2_attachments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id    BLOB NOT NULL,
    sender      TEXT NOT NULL,
    outgoing    INTEGER NOT NULL,
    file        TEXT NOT NULL,
    caption     TEXT,
    -- 'pending' (to download), 'saved', 'failed' or 'sent'
    state       TEXT NOT NULL,
    saved_path  TEXT,
    error       TEXT,
    at          TEXT NOT NULL
);
CREATE INDEX v2_attachments_state ON v2_attachments (state, id);
