-- Quotas and approvals.

-- Quota counters: what a user, service account or key has used in one daily or monthly
-- window. A counter is named by its scope, unit, period and window start, so a new window
-- starts from zero. Counters change on every request and are not in the change feed.
CREATE TABLE quota_counters (
    -- 'user:<subject>', 'service_account:<name>' or 'key:<id>'.
    scope        TEXT   NOT NULL,
    unit         TEXT   NOT NULL CHECK (unit IN ('images', 'requests', 'tokens')),
    period       TEXT   NOT NULL CHECK (period IN ('day', 'month')),
    -- Unix seconds: when the window started and when it resets.
    window_start BIGINT NOT NULL,
    window_end   BIGINT NOT NULL,
    used         BIGINT NOT NULL CHECK (used >= 0),
    PRIMARY KEY (scope, unit, period, window_start)
);

CREATE INDEX quota_counters_window_end ON quota_counters (window_end);

-- Requests a `require_approval` rule held back. Only a fingerprint (SHA-256 of the request's
-- authorization-relevant attributes) and a summary for approvers are kept: never prompt text
-- or image data. Expiry is judged at read time from expires_at.
CREATE TABLE approvals (
    id             TEXT   NOT NULL PRIMARY KEY,
    principal_kind TEXT   NOT NULL CHECK (principal_kind IN ('user', 'service_account')),
    subject        TEXT   NOT NULL,
    fingerprint    TEXT   NOT NULL,
    -- JSON object: method, path, permissions, preset, LoRAs, image count, model, …
    summary        TEXT   NOT NULL DEFAULT '{}',
    rule           TEXT,
    status         TEXT   NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'used')),
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    decided_at     BIGINT,
    decided_by     TEXT,
    used_at        BIGINT
);

CREATE INDEX approvals_request ON approvals (principal_kind, subject, fingerprint, status);
CREATE INDEX approvals_created_at ON approvals (created_at);
