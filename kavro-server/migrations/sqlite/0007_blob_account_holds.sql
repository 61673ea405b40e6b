-- Account-level blob holds: attachments sent in a v1 envelope (issue #14).
-- A v1 message is addressed to an account, not to devices, and the v1 send
-- route does not know blobs; so the uploader names the recipient account
-- (`POST /v2/blobs/{id}/holders`) and that account, with its account token
-- or any of its device tokens, may read the blob until it acknowledges it
-- with its account token (`POST /v2/blobs/{id}/ack`) or the blob expires.
-- A held blob counts as referenced: once no device and no account holds it,
-- the collector deletes it (store/blobs_sql.rs, remove_dead).

CREATE TABLE v2_blob_account_holds (
    blob_id BLOB NOT NULL REFERENCES v2_blobs (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (blob_id, user_id)
);
CREATE INDEX v2_blob_account_holds_user ON v2_blob_account_holds (user_id);
