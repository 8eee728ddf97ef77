-- SCIM 2.0 provisioning (issue 7): the IdP's view of users and its groups. A SCIM user is
-- linked to one `users` row; `active` is the inverse of `users.disabled` (not stored here).

CREATE TABLE scim_users (
    -- The SCIM resource id inferguard assigned (a UUID).
    scim_id      TEXT   NOT NULL PRIMARY KEY,
    username     TEXT   NOT NULL UNIQUE REFERENCES users (username),
    external_id  TEXT,
    display_name TEXT,
    given_name   TEXT,
    family_name  TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE scim_groups (
    scim_id      TEXT   NOT NULL PRIMARY KEY,
    -- The group name matched against policy.yaml's `groups:` (IdP group name -> role).
    display_name TEXT   NOT NULL UNIQUE,
    external_id  TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE scim_group_members (
    group_id TEXT NOT NULL REFERENCES scim_groups (scim_id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES scim_users (scim_id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);

CREATE INDEX scim_group_members_user ON scim_group_members (user_id);
