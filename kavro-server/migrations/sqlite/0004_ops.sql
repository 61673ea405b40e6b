-- Operators' controls (issue #13): accounts an operator can disable, when an
-- account was last seen, and invite codes for `registration = "invite"`.

-- A disabled account keeps its data but cannot log in; disabling also raises
-- its token generation, which ends its sessions.
ALTER TABLE users ADD COLUMN disabled_at INTEGER;
-- The last successful registration or login of the account.
ALTER TABLE users ADD COLUMN last_seen_at INTEGER;

-- Only the SHA-256 of a code is stored: the database (or a backup of it)
-- does not give anyone a usable code.
CREATE TABLE invites (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    code_hash  BLOB    NOT NULL UNIQUE,
    max_uses   INTEGER NOT NULL CHECK (max_uses > 0),
    uses       INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= max_uses),
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);
