-- Browser sessions (SSO, OIDC authorization-code flow) and the login states of flows in
-- progress.

-- One signed-in browser. Only the SHA-256 of the opaque session id (the cookie value) is kept.
-- The IdP's ID token (sent back as `id_token_hint` at logout) and refresh token (used to
-- refresh the group claims) ARE kept as issued: whoever can read this table can act as these
-- users at the IdP until the tokens expire, so protect the store like a secret.
CREATE TABLE sessions (
    id_sha256           TEXT    NOT NULL PRIMARY KEY,
    -- The IdP `sub` (the store username of an IdP user).
    username            TEXT    NOT NULL,
    issuer              TEXT    NOT NULL,
    -- The IdP session id (`sid` claim), matched by back-channel logout.
    idp_sid             TEXT,
    email               TEXT,
    -- JSON array of group names, JSON object of rule attributes, JSON array of `amr` values.
    groups              TEXT    NOT NULL DEFAULT '[]',
    attributes          TEXT    NOT NULL DEFAULT '{}',
    amr                 TEXT    NOT NULL DEFAULT '[]',
    acr                 TEXT,
    mfa                 BOOLEAN NOT NULL DEFAULT FALSE,
    id_token            TEXT,
    refresh_token       TEXT,
    created_at          BIGINT  NOT NULL,
    last_seen_at        BIGINT  NOT NULL,
    -- last_seen_at + the idle timeout: the session ends at the earlier of the two expiries.
    idle_expires_at     BIGINT  NOT NULL,
    absolute_expires_at BIGINT  NOT NULL,
    -- When the group claims were last read from the IdP (login or refresh).
    claims_refreshed_at BIGINT  NOT NULL,
    -- One replica at a time refreshes a session's claims: it holds the lease until then.
    refresh_lease_until BIGINT,
    ended_at            BIGINT,
    -- 'logout', 'backchannel_logout', 'revoked', 'idle_timeout', 'absolute_timeout',
    -- 'refresh_refused', 'replaced'.
    end_reason          TEXT
);

CREATE INDEX sessions_username ON sessions (username);
CREATE INDEX sessions_idp_sid ON sessions (idp_sid);
CREATE INDEX sessions_absolute_expires_at ON sessions (absolute_expires_at);

-- An authorization request in flight: single use, short-lived, shared by every replica (the
-- callback may reach another one). Not part of the change feed.
CREATE TABLE login_states (
    state_sha256  TEXT    NOT NULL PRIMARY KEY,
    nonce         TEXT    NOT NULL,
    pkce_verifier TEXT    NOT NULL,
    redirect_uri  TEXT    NOT NULL,
    -- Where the browser goes after the callback (already checked against open redirects).
    return_to     TEXT    NOT NULL,
    step_up       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);

CREATE INDEX login_states_expires_at ON login_states (expires_at);
