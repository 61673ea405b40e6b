-- The blob store's metadata (attachments, /v2/blobs). The bytes live in the
-- object store (data directory or S3), one object per uploaded chunk.
-- Both backends run the same SQL (store/blobs_sql.rs): times are Unix
-- milliseconds, booleans 0/1, ids UUIDs (UUID here).

CREATE TABLE v2_blobs (
    id         UUID    PRIMARY KEY,
    user_id    BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    size       BIGINT  NOT NULL CHECK (size > 0),
    received   BIGINT  NOT NULL DEFAULT 0 CHECK (received <= size),
    -- Set once a message referenced it: from then on it lives while a device
    -- it was sent to holds it (v2_blob_holds), and at most until expires_at.
    referenced BIGINT  NOT NULL DEFAULT 0,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX v2_blobs_user ON v2_blobs (user_id);
CREATE INDEX v2_blobs_expiry ON v2_blobs (expires_at);

-- One stored chunk: bytes [start, start + length) in object `object_key`.
CREATE TABLE v2_blob_chunks (
    blob_id    UUID    NOT NULL REFERENCES v2_blobs (id) ON DELETE CASCADE,
    start      BIGINT  NOT NULL,
    length     BIGINT  NOT NULL,
    object_key TEXT    NOT NULL,
    PRIMARY KEY (blob_id, start)
);

-- A message that refers to a blob; gone with the message (acknowledged by
-- every device it was queued for, or expired).
CREATE TABLE v2_blob_refs (
    blob_id    UUID    NOT NULL REFERENCES v2_blobs (id) ON DELETE CASCADE,
    message_id BIGINT  NOT NULL REFERENCES v2_messages (id) ON DELETE CASCADE,
    PRIMARY KEY (blob_id, message_id)
);
CREATE INDEX v2_blob_refs_message ON v2_blob_refs (message_id);

-- A device a referencing message was queued for, until that device is done
-- with the blob (`POST /v2/blobs/{id}/ack`, after saving or refusing it) or
-- is revoked: a receiver downloads after it acknowledged the message, so
-- the message's own lifetime cannot be the blob's. A referenced blob with
-- no hold left is deleted (and every blob at expires_at).
CREATE TABLE v2_blob_holds (
    blob_id   UUID NOT NULL REFERENCES v2_blobs (id) ON DELETE CASCADE,
    device_id BIGINT NOT NULL REFERENCES v2_devices (id) ON DELETE CASCADE,
    PRIMARY KEY (blob_id, device_id)
);
CREATE INDEX v2_blob_holds_device ON v2_blob_holds (device_id);
