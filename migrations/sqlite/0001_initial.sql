-- inferguard store schema, SQLite flavour. Times are unix seconds; attributes and scopes are
-- JSON text. Every mutation also appends a row to `changes` (the change feed running servers
-- poll to invalidate their caches).

CREATE TABLE users (
    username      TEXT    NOT NULL PRIMARY KEY,
    email         TEXT,
    -- The explicit role binding; NULL = decided by IdP groups or the policy's default role.
    role          TEXT,
    attributes    TEXT    NOT NULL DEFAULT '{}',
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    -- Argon2id PHC string for local login; NULL for IdP-only users.
    password_hash TEXT,
    created_at    BIGINT  NOT NULL
);

CREATE TABLE service_accounts (
    name         TEXT    NOT NULL PRIMARY KEY,
    role         TEXT    NOT NULL,
    attributes   TEXT    NOT NULL DEFAULT '{}',
    daily_images BIGINT,
    daily_tokens BIGINT,
    disabled     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   BIGINT  NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT   NOT NULL PRIMARY KEY,
    name          TEXT   NOT NULL,
    owner_kind    TEXT   NOT NULL CHECK (owner_kind IN ('user', 'service_account')),
    owner         TEXT   NOT NULL,
    -- Lower-case hex SHA-256 of the secret part; the secret itself is never stored.
    secret_sha256 TEXT   NOT NULL,
    -- JSON array of permission names; NULL = the owner's role permissions.
    scopes        TEXT,
    daily_images  BIGINT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);

CREATE INDEX api_keys_owner ON api_keys (owner_kind, owner);
CREATE INDEX api_keys_created_at ON api_keys (created_at);

CREATE TABLE changes (
    seq    INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    -- 'user', 'service_account', 'key' (later features add their own entity names).
    entity TEXT    NOT NULL,
    id     TEXT    NOT NULL,
    at     BIGINT  NOT NULL
);
