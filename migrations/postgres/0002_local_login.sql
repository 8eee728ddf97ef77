-- Local-user login: inferguard's own signing keys and the refresh tokens of `/auth/token`.

-- Keys inferguard signs with (its own JWTs, the upstream identity assertion, the audit
-- checkpoints), generated at first start when the configuration names none. At most one
-- active key per purpose; a retired key stays so tokens it signed can still be explained.
CREATE TABLE signing_keys (
    kid         TEXT   NOT NULL PRIMARY KEY,
    purpose     TEXT   NOT NULL,
    -- PKCS#8 DER of the private key.
    private_key BYTEA  NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);

CREATE UNIQUE INDEX signing_keys_active ON signing_keys (purpose) WHERE retired_at IS NULL;

-- Refresh tokens: only the SHA-256 of the token is kept. Each use rotates the token (used_at
-- set, a successor created in the same family); presenting a used token again revokes the
-- whole family.
CREATE TABLE refresh_tokens (
    token_sha256 TEXT   NOT NULL PRIMARY KEY,
    family_id    TEXT   NOT NULL,
    username     TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    -- The end of the login the family belongs to; rotation does not extend it.
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT,
    revoked_at   BIGINT
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_username ON refresh_tokens (username);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);
