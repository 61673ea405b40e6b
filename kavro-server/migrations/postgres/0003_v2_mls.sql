-- Kavro v2 (MLS): devices with signed links, link requests, key packages,
-- groups with one order per group, and per-device queues. PostgreSQL backend.

-- An MLS client of an account. The root device (first of the account) has no
-- link; every other device was admitted by a signature of an existing device.
CREATE TABLE v2_devices (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    signature_key  BYTEA       NOT NULL UNIQUE,
    link_signer    BIGINT      REFERENCES v2_devices (id),
    link_signature BYTEA,
    created_at     TIMESTAMPTZ NOT NULL,
    revoked_at     TIMESTAMPTZ,
    -- The queue: the seq the next entry gets, and everything <= acked_seq is
    -- acknowledged or expired. Writers of a device's queue lock this row (in
    -- id order), so seq order is commit order for each device.
    next_seq       BIGINT      NOT NULL DEFAULT 1,
    acked_seq      BIGINT      NOT NULL DEFAULT 0,
    CHECK ((link_signer IS NULL) = (link_signature IS NULL))
);
CREATE UNIQUE INDEX v2_devices_one_root ON v2_devices (user_id) WHERE link_signer IS NULL;
CREATE INDEX v2_devices_user ON v2_devices (user_id, id);

-- A new installation waiting for an existing device to approve it.
CREATE TABLE v2_link_requests (
    id            UUID        PRIMARY KEY,
    user_id       BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash     BYTEA       NOT NULL UNIQUE,   -- SHA-256 of the code
    signature_key BYTEA       NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    failures      INTEGER     NOT NULL DEFAULT 0,
    device_id     BIGINT      REFERENCES v2_devices (id) ON DELETE CASCADE
);
CREATE INDEX v2_link_requests_user ON v2_link_requests (user_id);

CREATE TABLE v2_key_packages (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   BIGINT      NOT NULL REFERENCES v2_devices (id) ON DELETE CASCADE,
    key_package BYTEA       NOT NULL,
    last_resort BOOLEAN     NOT NULL,
    not_after   TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX v2_key_packages_device ON v2_key_packages (device_id, last_resort, id);
CREATE UNIQUE INDEX v2_key_packages_one_last_resort ON v2_key_packages (device_id)
    WHERE last_resort;

CREATE TABLE v2_groups (
    group_id   BYTEA       PRIMARY KEY,
    epoch      BIGINT      NOT NULL,
    created_by BIGINT      NOT NULL REFERENCES v2_devices (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE v2_group_members (
    group_id     BYTEA  NOT NULL REFERENCES v2_groups (group_id) ON DELETE CASCADE,
    device_id    BIGINT NOT NULL REFERENCES v2_devices (id) ON DELETE CASCADE,
    joined_epoch BIGINT NOT NULL,
    PRIMARY KEY (group_id, device_id)
);
CREATE INDEX v2_group_members_device ON v2_group_members (device_id);

-- A message body, stored once whatever the number of recipients; `pending`
-- counts the queue entries that still point at it.
CREATE TABLE v2_messages (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id      BYTEA       NOT NULL,
    sender_device BIGINT      NOT NULL REFERENCES v2_devices (id) ON DELETE CASCADE,
    kind          SMALLINT    NOT NULL,
    epoch         BIGINT      NOT NULL,
    body          BYTEA       NOT NULL,
    client_msg_id UUID,
    result_epoch  BIGINT      NOT NULL,
    recipients    INTEGER     NOT NULL,
    pending       INTEGER     NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX v2_messages_client_msg_id ON v2_messages (sender_device, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
CREATE INDEX v2_messages_expiry ON v2_messages (expires_at);

-- One ordered stream per device: small rows pointing at the shared body.
CREATE TABLE v2_queue (
    device_id  BIGINT NOT NULL REFERENCES v2_devices (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (device_id, seq)
);
CREATE INDEX v2_queue_message ON v2_queue (message_id);
