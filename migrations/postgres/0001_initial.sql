-- inferguard store schema, PostgreSQL flavour (the same tables as migrations/sqlite). Times are
-- unix seconds; attributes and scopes are JSON text. Every mutation also appends a row to
-- `changes` (the change feed every replica follows to invalidate its caches); each insert into
-- `changes` also sends a NOTIFY (see the trigger below), so replicas wake at once.

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

-- Writers append here under a transaction-scoped advisory lock, so sequence numbers become
-- visible in order (a reader that has seen seq N never later finds a committed row below N).
CREATE TABLE changes (
    seq    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- 'user', 'service_account', 'key' (later features add their own entity names).
    entity TEXT   NOT NULL,
    id     TEXT   NOT NULL,
    at     BIGINT NOT NULL
);

-- Wakes every replica LISTENing on `inferguard_changes_<oid of this changes table>` when a
-- change commits (NOTIFY is delivered at commit). The table's oid in the channel name keeps
-- stores in different schemas of one database apart. The payload is informative only: a
-- listener reads the feed itself.
CREATE FUNCTION inferguard_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('inferguard_changes_' || TG_RELID::text, NEW.seq::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER changes_notify AFTER INSERT ON changes
    FOR EACH ROW EXECUTE FUNCTION inferguard_notify_change();
